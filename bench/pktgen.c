/*
 * pktgen: blast minimum-size IPv4/UDP frames out of one interface, for the forwarding benchmark.
 *
 *   pktgen IFNAME DST_MAC SRC_IP DST_IP DST_PORT FLOWS SECONDS [PPS]
 *
 * Frames are 60 bytes (64 on the wire with the FCS), with correct IP and UDP checksums; flow i
 * uses source port 10000 + i % 50000 and source address SRC_IP + i / 50000 (more than 50000
 * flows need the next addresses on the interface too). PPS > 0 paces the sending to about that
 * many packets a second (in batches); 0 or absent: as fast as it goes. AF_PACKET with PACKET_QDISC_BYPASS and sendmmsg batches keep the
 * sender cheap, since Debian's trafgen fails in a netns and xdp-trafficgen does not load here.
 * Prints {"sent":N,"seconds":S} on stdout, also when SIGTERM ends it early.
 */
#define _GNU_SOURCE /* sendmmsg */
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "inet_csum.h"

#define FRAME_LEN 60
#define BATCH 64
#define MAX_FLOWS 65536
#define SPORT_BASE 10000
#define PORTS_PER_ADDR 50000

struct frame {
	struct ether_header eth;
	struct iphdr ip;
	struct udphdr udp;
	uint8_t payload[FRAME_LEN - sizeof(struct ether_header) - sizeof(struct iphdr) -
			sizeof(struct udphdr)];
} __attribute__((packed));

_Static_assert(sizeof(struct frame) == FRAME_LEN, "frame must be 60 bytes");

static volatile sig_atomic_t stopped;

static void on_term(int sig)
{
	(void)sig;
	stopped = 1;
}

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static void build(struct frame *f, const uint8_t *src_mac, const uint8_t *dst_mac, uint32_t saddr,
		  uint32_t daddr, uint16_t sport, uint16_t dport)
{
	struct {
		uint32_t saddr, daddr;
		uint8_t zero, proto;
		uint16_t len;
	} __attribute__((packed)) pseudo;
	uint16_t udp_len = sizeof(f->udp) + sizeof(f->payload);
	uint16_t csum;

	memset(f, 0, sizeof(*f));
	memcpy(f->eth.ether_dhost, dst_mac, ETH_ALEN);
	memcpy(f->eth.ether_shost, src_mac, ETH_ALEN);
	f->eth.ether_type = htons(ETHERTYPE_IP);

	f->ip.version = 4;
	f->ip.ihl = 5;
	f->ip.tot_len = htons(sizeof(f->ip) + udp_len);
	f->ip.frag_off = htons(IP_DF);
	f->ip.ttl = 64;
	f->ip.protocol = IPPROTO_UDP;
	f->ip.saddr = saddr;
	f->ip.daddr = daddr;
	f->ip.check = fold(sum16(&f->ip, sizeof(f->ip), 0));

	f->udp.source = htons(sport);
	f->udp.dest = htons(dport);
	f->udp.len = htons(udp_len);
	memcpy(f->payload, "ebpf-offloader", 14);
	pseudo = (typeof(pseudo)){ saddr, daddr, 0, IPPROTO_UDP, htons(udp_len) };
	csum = fold(sum16(&f->udp, udp_len, sum16(&pseudo, sizeof(pseudo), 0)));
	f->udp.check = csum ? csum : 0xffff; /* 0 means "no checksum" in UDP */
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int parse_mac(const char *s, uint8_t *mac)
{
	return sscanf(s, "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &mac[0], &mac[1], &mac[2], &mac[3],
		      &mac[4], &mac[5]) == 6 ? 0 : -1;
}

int main(int argc, char **argv)
{
	uint8_t src_mac[ETH_ALEN], dst_mac[ETH_ALEN];
	struct in_addr saddr, daddr;
	struct sockaddr_ll sll = { .sll_family = AF_PACKET };
	struct mmsghdr msgs[BATCH];
	struct iovec iovs[BATCH];
	struct frame *frames;
	struct ifreq ifr;
	unsigned long long sent = 0, failed = 0;
	long flows, dport;
	double seconds, start, end, t, pps = 0;
	unsigned int next = 0;
	int fd, one = 1, i;

	if (argc != 8 && argc != 9) {
		fprintf(stderr, "usage: %s IFNAME DST_MAC SRC_IP DST_IP DST_PORT FLOWS SECONDS [PPS]\n", argv[0]);
		return 2;
	}
	flows = strtol(argv[6], NULL, 10);
	dport = strtol(argv[5], NULL, 10);
	seconds = strtod(argv[7], NULL);
	if (argc == 9)
		pps = strtod(argv[8], NULL);
	if (parse_mac(argv[2], dst_mac) || !inet_aton(argv[3], &saddr) || !inet_aton(argv[4], &daddr) ||
	    dport < 1 || dport > 65535 || flows < 1 || flows > MAX_FLOWS || !(seconds > 0) || !(pps >= 0)) {
		fprintf(stderr, "pktgen: bad arguments\n");
		return 2;
	}

	/* Protocol 0: a send-only socket, so the kernel does not copy every frame back to us. */
	fd = socket(AF_PACKET, SOCK_RAW, 0);
	if (fd < 0)
		die("socket");
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", argv[1]);
	if (ioctl(fd, SIOCGIFHWADDR, &ifr) < 0)
		die("SIOCGIFHWADDR");
	memcpy(src_mac, ifr.ifr_hwaddr.sa_data, ETH_ALEN);
	sll.sll_ifindex = if_nametoindex(argv[1]);
	if (!sll.sll_ifindex)
		die("if_nametoindex");
	if (bind(fd, (struct sockaddr *)&sll, sizeof(sll)) < 0)
		die("bind");
	/* Straight to the driver: the qdisc would only add a lock and a queue to what we measure. */
	if (setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(one)) < 0)
		die("PACKET_QDISC_BYPASS");

	frames = calloc(flows, sizeof(*frames));
	if (!frames)
		die("calloc");
	for (i = 0; i < flows; i++)
		build(&frames[i], src_mac, dst_mac, htonl(ntohl(saddr.s_addr) + i / PORTS_PER_ADDR),
		      daddr.s_addr, SPORT_BASE + i % PORTS_PER_ADDR, dport);

	memset(msgs, 0, sizeof(msgs));
	for (i = 0; i < BATCH; i++) {
		iovs[i].iov_len = FRAME_LEN;
		msgs[i].msg_hdr.msg_iov = &iovs[i];
		msgs[i].msg_hdr.msg_iovlen = 1;
	}

	/* SIGTERM ends the run early; the counts so far are still printed. */
	signal(SIGTERM, on_term);
	start = now();
	end = start + seconds;
	do {
		int n;

		/* Round-robin over the flows, so that every batch spreads across them. */
		for (i = 0; i < BATCH; i++) {
			iovs[i].iov_base = &frames[next];
			if (++next == flows)
				next = 0;
		}
		n = sendmmsg(fd, msgs, BATCH, 0);
		if (n > 0) {
			sent += n;
		} else if (errno == ENOBUFS || errno == EAGAIN || errno == ENETDOWN) {
			/* The device queue was full: the frame is lost, as on a wire. Keep going. */
			failed++;
		} else {
			die("sendmmsg");
		}
		t = now();
		if (pps > 0) {
			/* Paced: wait until this batch's share of the time has passed. */
			double due = start + (sent + failed * BATCH) / pps;

			if (due > t && due < end) {
				struct timespec ts = { (time_t)(due - t), (long)((due - t - (time_t)(due - t)) * 1e9) };

				nanosleep(&ts, NULL);
				t = now();
			}
		}
	} while (t < end && !stopped);

	printf("{\"sent\":%llu,\"failed_batches\":%llu,\"seconds\":%.6f}\n", sent, failed, t - start);
	free(frames);
	close(fd);
	return 0;
}
