/*
 * tern_err.h: the error codes every tern module returns.
 *
 * Functions that can fail return int: 0 on success, a negative TERN_E* code
 * on failure. The absolute value of a code is also what travels in an ERROR
 * message on the wire (SPEC.md, "Error codes"), so codes are never
 * renumbered: new ones are appended.
 */
#ifndef TERN_ERR_H
#define TERN_ERR_H

#if defined(__GNUC__) || defined(__clang__)
#define TERN_WUR __attribute__((warn_unused_result))
#else
#define TERN_WUR
#endif

enum tern_err {
	TERN_OK = 0,
	TERN_EINVAL = -1,     /* a caller passed an argument out of range */
	TERN_ENOMEM = -2,     /* allocation failed */
	TERN_ETRUNC = -3,     /* input ends before a declared field does */
	TERN_ETOOBIG = -4,    /* a declared length is over its cap */
	TERN_EVERSION = -5,   /* unknown protocol or encoding version */
	TERN_ETYPE = -6,      /* unknown message type */
	TERN_ETRAILING = -7,  /* bytes left after the last field */
	TERN_EUTF8 = -8,      /* a text field is not valid UTF-8 */
	TERN_EFIELD = -9,     /* a field's value is outside its domain */
	TERN_EDECRYPT = -10,  /* AEAD authentication failed (tampered, replayed
	                         or reordered frame) */
	TERN_ENONCE = -11,    /* a cipher's nonce space is exhausted */
	TERN_EDH = -12,       /* a Diffie-Hellman result was all zero */
	TERN_ESTATE = -13,    /* a call came in the wrong state */
	TERN_EPATTERN = -14,  /* unknown or unsupported Noise protocol name */
	TERN_EKEY = -15,      /* a key is missing, malformed or not accepted */
	TERN_ETIMEOUT = -16,  /* a deadline passed */
	TERN_EIO = -17,       /* an operating-system I/O call failed */
	TERN_ECLOSED = -18,   /* the peer closed the connection */
	TERN_EAUTH = -19,     /* the peer is not who it must be */
	TERN_ENOUSER = -20,   /* no such user or device */
	TERN_EEXIST = -21,    /* the thing already exists */
	TERN_EQUOTA = -22,    /* recipient mailbox full */
	TERN_ERATE = -23,     /* rate limit reached; try later */
	TERN_EDISK = -24,     /* storage full or failing; nothing was stored */
	TERN_EDB = -25,       /* database error */
	TERN_EDENIED = -26,   /* not allowed (disabled account, bad invite) */
	TERN_EBUSY = -27,     /* the node is overloaded; try later */
	TERN_EUNREACH = -28,  /* the node could not be reached */
	TERN_EEXPIRED = -29,  /* the thing expired */
	TERN_ECONFIG = -30,   /* bad configuration */
	TERN_ENOTFOUND = -31, /* a requested object does not exist */
	TERN_ECANCELED = -32, /* withdrawn before it was carried out */
	TERN_EIDENTITY = -33, /* a peer's identity key changed; not trusted
	                         until the user accepts it */
	TERN_EDUP = -34,      /* already seen (a duplicate message) */
	TERN_ENOSERVICE = -35, /* the domain says it offers no such service
	                          (an SRV record with target ".") */
	TERN_E_LAST = -35
};

/* tern_strerror returns a static, human-readable text for a code. */
const char *tern_strerror(int code);

/* tern_errname returns the code's symbolic name ("TERN_ETRUNC"). */
const char *tern_errname(int code);

#endif
