/* esprit's C shim over DPDK: DPDK's burst and mbuf functions are static
 * inline in its headers, so Rust cannot call them through bindgen. Each
 * wrapper is one call; the port setup keeps rte_eth_conf (a large struct
 * of unions whose layout changes between releases) on the C side. */
#ifndef ESPRIT_DPDK_SHIM_H
#define ESPRIT_DPDK_SHIM_H

#include <stdint.h>

struct rte_mbuf;
struct rte_mempool;

uint16_t esprit_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
uint16_t esprit_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
int esprit_pktmbuf_alloc_bulk(struct rte_mempool *pool, struct rte_mbuf **mbufs, unsigned n);
void esprit_pktmbuf_free(struct rte_mbuf *m);
/* Start of the first segment's data (rte_pktmbuf_mtod). */
uint8_t *esprit_pktmbuf_data(struct rte_mbuf *m);
uint16_t esprit_pktmbuf_data_len(const struct rte_mbuf *m);
uint32_t esprit_pktmbuf_pkt_len(const struct rte_mbuf *m);
uint16_t esprit_pktmbuf_nb_segs(const struct rte_mbuf *m);
/* Appends len bytes to a one-segment mbuf; NULL if there is no room. */
uint8_t *esprit_pktmbuf_append(struct rte_mbuf *m, uint16_t len);
/* One fresh mbuf from `pool`, or NULL (rte_pktmbuf_alloc). */
struct rte_mbuf *esprit_pktmbuf_alloc(struct rte_mempool *pool);
/* Start of the mbuf's buffer (buf_addr), its size, and where data starts. */
uint8_t *esprit_pktmbuf_buf_addr(struct rte_mbuf *m);
uint16_t esprit_pktmbuf_buf_len(const struct rte_mbuf *m);
uint16_t esprit_pktmbuf_data_off(const struct rte_mbuf *m);
/* Makes `m` one segment of `len` bytes at `data_off` in its buffer (a
 * packet built in place, about to be sent). Returns 0, or -1 if it does
 * not fit or `m` has more segments. */
int esprit_pktmbuf_set_data(struct rte_mbuf *m, uint16_t data_off, uint16_t len);
/* rte_errno (a per-lcore thread-local). */
int esprit_errno(void);
/* Frames the device dropped on receive so far: missed because its rx
 * ring was full, or received with errors (imissed + ierrors of
 * rte_eth_stats_get). Not rx_nombuf: a NIC that found no mbuf leaves the
 * frame in its ring, and counts it in imissed if the ring overflows.
 * Returns 0 or a negative errno. */
int esprit_rx_drops(uint16_t port, uint64_t *drops);
/* Configures `port` with nb_queues rx and tx queues of nb_desc descriptors
 * on `pool` (RSS on IPv4/UDP when nb_queues > 1 and the driver has it) and
 * starts it. Returns 0 or a negative errno. */
int esprit_port_setup(uint16_t port, uint16_t nb_queues, uint16_t nb_desc,
                      struct rte_mempool *pool);
/* Two ethdev ports joined back to back by two rte_rings, one queue each
 * (net_ring through rte_eth_from_rings): what a sends b receives. Returns 0
 * and the port ids, or a negative errno. */
int esprit_ring_pair(const char *name_a, const char *name_b, unsigned ring_size,
                     uint16_t *port_a, uint16_t *port_b);

#endif
