#include <errno.h>
#include <string.h>

#include <rte_errno.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

#include "shim.h"

uint16_t esprit_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_rx_burst(port, queue, pkts, n);
}

uint16_t esprit_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_tx_burst(port, queue, pkts, n);
}

int esprit_pktmbuf_alloc_bulk(struct rte_mempool *pool, struct rte_mbuf **mbufs, unsigned n)
{
	return rte_pktmbuf_alloc_bulk(pool, mbufs, n);
}

void esprit_pktmbuf_free(struct rte_mbuf *m)
{
	rte_pktmbuf_free(m);
}

uint8_t *esprit_pktmbuf_data(struct rte_mbuf *m)
{
	return rte_pktmbuf_mtod(m, uint8_t *);
}

uint16_t esprit_pktmbuf_data_len(const struct rte_mbuf *m)
{
	return rte_pktmbuf_data_len(m);
}

uint32_t esprit_pktmbuf_pkt_len(const struct rte_mbuf *m)
{
	return rte_pktmbuf_pkt_len(m);
}

uint16_t esprit_pktmbuf_nb_segs(const struct rte_mbuf *m)
{
	return m->nb_segs;
}

uint8_t *esprit_pktmbuf_append(struct rte_mbuf *m, uint16_t len)
{
	return (uint8_t *)rte_pktmbuf_append(m, len);
}

struct rte_mbuf *esprit_pktmbuf_alloc(struct rte_mempool *pool)
{
	return rte_pktmbuf_alloc(pool);
}

uint8_t *esprit_pktmbuf_buf_addr(struct rte_mbuf *m)
{
	return (uint8_t *)m->buf_addr;
}

uint16_t esprit_pktmbuf_buf_len(const struct rte_mbuf *m)
{
	return m->buf_len;
}

uint16_t esprit_pktmbuf_data_off(const struct rte_mbuf *m)
{
	return m->data_off;
}

int esprit_pktmbuf_set_data(struct rte_mbuf *m, uint16_t data_off, uint16_t len)
{
	if ((uint32_t)data_off + len > m->buf_len || m->nb_segs != 1)
		return -1;
	m->data_off = data_off;
	m->data_len = len;
	m->pkt_len = len;
	return 0;
}

int esprit_errno(void)
{
	return rte_errno;
}

int esprit_rx_drops(uint16_t port, uint64_t *drops)
{
	struct rte_eth_stats st;
	int rc = rte_eth_stats_get(port, &st);
	if (rc != 0)
		return rc;
	*drops = st.imissed + st.ierrors;
	return 0;
}

int esprit_port_setup(uint16_t port, uint16_t nb_queues, uint16_t nb_desc,
                      struct rte_mempool *pool)
{
	struct rte_eth_conf conf;
	struct rte_eth_dev_info info;
	int rc, socket;
	uint16_t q;

	memset(&conf, 0, sizeof(conf));
	rc = rte_eth_dev_info_get(port, &info);
	if (rc != 0)
		return rc;
	/* RSS spreads flows over the workers' queues; ESP-in-UDP from one
	 * peer is one flow, so the worker that gets it may hand it off. */
	if (nb_queues > 1 && info.flow_type_rss_offloads != 0) {
		conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
		conf.rx_adv_conf.rss_conf.rss_hf =
			(RTE_ETH_RSS_IP | RTE_ETH_RSS_UDP) & info.flow_type_rss_offloads;
	}
	rc = rte_eth_dev_configure(port, nb_queues, nb_queues, &conf);
	if (rc != 0)
		return rc;
	socket = rte_eth_dev_socket_id(port);
	if (socket < 0)
		socket = (int)rte_socket_id();
	for (q = 0; q < nb_queues; q++) {
		rc = rte_eth_rx_queue_setup(port, q, nb_desc, (unsigned)socket, NULL, pool);
		if (rc != 0)
			return rc;
		rc = rte_eth_tx_queue_setup(port, q, nb_desc, (unsigned)socket, NULL);
		if (rc != 0)
			return rc;
	}
	return rte_eth_dev_start(port);
}

int esprit_ring_pair(const char *name_a, const char *name_b, unsigned ring_size,
                     uint16_t *port_a, uint16_t *port_b)
{
	char rname[RTE_RING_NAMESIZE];
	struct rte_ring *ab, *ba;
	int a, b;

	snprintf(rname, sizeof(rname), "%s>%s", name_a, name_b);
	ab = rte_ring_create(rname, ring_size, (int)rte_socket_id(), RING_F_SP_ENQ | RING_F_SC_DEQ);
	snprintf(rname, sizeof(rname), "%s<%s", name_a, name_b);
	ba = rte_ring_create(rname, ring_size, (int)rte_socket_id(), RING_F_SP_ENQ | RING_F_SC_DEQ);
	if (ab == NULL || ba == NULL)
		return -rte_errno;
	a = rte_eth_from_rings(name_a, &ba, 1, &ab, 1, rte_socket_id());
	b = rte_eth_from_rings(name_b, &ab, 1, &ba, 1, rte_socket_id());
	if (a < 0 || b < 0)
		return -rte_errno;
	*port_a = (uint16_t)a;
	*port_b = (uint16_t)b;
	return 0;
}
