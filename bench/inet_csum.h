/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The Internet checksum (RFC 1071) for the packet generators (bench/pktgen.c and
 * test/fixtures/flood.c): sum16() accumulates 16-bit big-endian words, fold() folds the sum and
 * returns its complement in network byte order, ready to store in a header.
 */
#ifndef INET_CSUM_H
#define INET_CSUM_H

#include <arpa/inet.h>
#include <stddef.h>
#include <stdint.h>

static uint32_t sum16(const void *data, size_t len, uint32_t sum)
{
	const uint8_t *p = data;

	for (; len > 1; p += 2, len -= 2)
		sum += (uint32_t)p[0] << 8 | p[1];
	if (len)
		sum += (uint32_t)p[0] << 8;
	return sum;
}

static uint16_t fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return htons((uint16_t)~sum);
}

#endif /* INET_CSUM_H */
