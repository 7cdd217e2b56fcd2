/*
 * transport.h - the library's messaging layer; transport.c is the only file
 * that includes nng.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef OT_TRANSPORT_H
#define OT_TRANSPORT_H

/* The version string of the nng library in use. */
const char *oti_transport_version(void);

#endif /* OT_TRANSPORT_H */
