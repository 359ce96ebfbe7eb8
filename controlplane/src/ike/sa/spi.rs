//! Inbound ESP SPIs come from the caller: the data plane encodes a table
//! slot and a generation in them.

/// Hands out inbound SPIs and takes them back when the CHILD SA is gone.
pub trait SpiAllocator {
    /// A fresh SPI (never 0..=255, RFC 4303 §2.1), or `None` when full.
    fn allocate(&mut self) -> Option<u32>;
    fn release(&mut self, spi: u32);
}

/// Sequential SPIs from a start value, for tests and tools.
#[derive(Clone, Debug)]
pub struct SequentialSpis {
    pub next: u32,
    pub released: Vec<u32>,
}

impl SequentialSpis {
    pub fn starting_at(next: u32) -> Self {
        SequentialSpis {
            next: next.max(256),
            released: Vec::new(),
        }
    }
}

impl SpiAllocator for SequentialSpis {
    fn allocate(&mut self) -> Option<u32> {
        let s = self.next;
        self.next = self.next.checked_add(1)?;
        Some(s)
    }

    fn release(&mut self, spi: u32) {
        self.released.push(spi);
    }
}
