/*
 * msg.h: tern's messages, encoding version 1 (SPEC.md, "Message encoding"
 * and "Message catalogue").
 *
 * A message is what the secure channel hands over once a transport
 * message is reassembled:
 *
 *   u8  version   MSG_VERSION
 *   u8  type      enum msg_type
 *   u32 req       request id, big-endian; a response echoes it, 0 for an
 *                 unsolicited push
 *   ... the fields of the type, in table order, no padding, nothing after
 *
 * All integers are big-endian. The codec is table-driven: msg.c holds one
 * descriptor per type listing its fields (kind, place in the typed struct,
 * limits), and one encoder and one decoder walk it. Adding a message is a
 * struct here, a member of struct msg's union and a row in that table.
 *
 * Decoding is zero-copy: string, byte and list fields of a decoded message
 * point into the input buffer, which must outlive the struct msg (fixed-size
 * fields such as ids and keys are copied). The decoder never allocates, never
 * reads outside the input and never aborts; each kind of bad input earns its
 * own error code. The encoder checks every field against the same rules, so
 * it never produces bytes the decoder would refuse, and there is exactly one
 * encoding of every message (the fuzz target checks decode-encode identity).
 */
#ifndef TERN_MSG_H
#define TERN_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "tern_err.h"

#define MSG_VERSION 1
#define MSG_HDR_LEN 6            /* version, type, req */
#define MSG_PAYLOAD_MAX 65536    /* end-to-end payload in SEND/DELIVER */
/* The largest message: a 64 KiB payload plus its envelope, with headroom.
 * The channel's reassembly cap for authenticated peers. */
#define MSG_MAX 71680
/* The channel's reassembly cap before a connection has logged in: what an
 * unauthenticated peer may send has no business being large. */
#define MSG_MAX_UNAUTH 4096

#define MSG_ID_LEN 16            /* ID16: envelope and notice ids */
#define MSG_KEY_LEN 32           /* KEY32: X25519 / Ed25519 public keys */
#define MSG_SIG_LEN 64           /* SIG64: Ed25519 signatures */

/* Per-field caps, named so callers can size their inputs. */
#define MSG_ERROR_DETAIL_MAX 1024 /* ERROR.detail, bytes */
#define MSG_INVITE_MAX 64         /* REGISTER.invite, bytes */
#define MSG_DEVICE_NAME_MAX 64    /* REGISTER/DEVICE_ADD.device_name */
#define MSG_DEVICES_MAX 64        /* DEVICES.device_ids, records */
#define MSG_DEVICE_REC_LEN 4      /* one DEVICES record: u32 device id */
#define MSG_NAME_MAX 64           /* PROFILE(_SET).name, bytes */
#define MSG_STATUS_MAX 256        /* PROFILE(_SET).status, bytes */
#define MSG_CONTACTS_MAX 256      /* CONTACTS.users: 256 x 255 bytes fits MSG_MAX */
#define MSG_PREKEYS_MAX 100       /* KEYS_PUT.prekeys, records */
#define MSG_PREKEY_REC_LEN 36     /* u32 id, KEY32 */
#define MSG_BUNDLE_REC_LEN 176    /* one BUNDLE record, see SPEC.md */
#define MSG_PREKEY_ID_MAX 0xFFFFFEu /* one-time and signed prekey ids */
#define MSG_LAST_RESORT_ID 0xFFFFFFu /* the last-resort prekey's id */
#define MSG_REG_ID_MAX 16380      /* libsignal registration ids: 1..this */
#define MSG_FED_REQ_MAX 4096      /* FED_REQ.request: an encoded request */
#define MSG_FED_RESP_MAX (MSG_MAX - 64) /* FED_RESP.response */

/*
 * Type codes. Ranges reserved for later versions:
 *   0x40-0x5F  end-to-end sessions and prekeys
 *   0x60-0x7F  federation (node to node)
 *   0x80-0x9F  media and groups
 */
enum msg_type {
	MSG_ERROR = 0x01,          /* both: a request failed */
	MSG_PING = 0x02,           /* both: liveness probe */
	MSG_PONG = 0x03,           /* both: answer to PING */
	MSG_OK = 0x04,             /* node: generic success, no fields */

	MSG_REGISTER = 0x10,       /* client: create user and first device */
	MSG_REGISTERED = 0x11,     /* node: the new device's id */
	MSG_LOGIN = 0x12,          /* client: authenticate as a device */
	MSG_LOGIN_OK = 0x13,       /* node: logged in */
	MSG_DEVICE_ADD = 0x14,     /* client: authorize another device */
	MSG_DEVICE_ADDED = 0x15,   /* node: its id */
	MSG_DEVICE_LIST = 0x16,    /* client: a user's devices, please */
	MSG_DEVICES = 0x17,        /* node: the list */
	MSG_DEVICE_REMOVE = 0x18,  /* client: revoke one of our devices */

	MSG_SEND = 0x20,           /* client: an envelope for a device */
	MSG_SENT = 0x21,           /* node: the envelope is stored */
	MSG_DELIVER = 0x22,        /* node: an envelope for this device */
	MSG_ACK = 0x23,            /* client: a DELIVER or NOTICE is handled */
	MSG_NOTICE = 0x24,         /* node: something happened to an envelope */

	MSG_PROFILE_SET = 0x30,    /* client: our name and status */
	MSG_PROFILE_GET = 0x31,    /* client: someone's profile, please */
	MSG_PROFILE = 0x32,        /* node: a profile */
	MSG_PRIVACY_SET = 0x33,    /* client: who sees our last-seen time */
	MSG_CONTACT_ADD = 0x34,    /* client: add to our contacts */
	MSG_CONTACT_REMOVE = 0x35, /* client: remove from our contacts */
	MSG_CONTACT_LIST = 0x36,   /* client: our contacts, please */
	MSG_CONTACTS = 0x37,       /* node: the list */
	MSG_PRESENCE_SUB = 0x38,   /* client: tell us about a user's presence */
	MSG_PRESENCE_UNSUB = 0x39, /* client: stop telling us */
	MSG_PRESENCE = 0x3A,       /* node: a user's presence */

	MSG_KEYS_PUT = 0x40,       /* client: our device's public keys */
	MSG_KEYS_STATUS = 0x41,    /* client: how many prekeys are left? */
	MSG_KEYS_COUNT = 0x42,     /* node: that many (answer or push) */
	MSG_BUNDLE_GET = 0x43,     /* client: a user's prekey bundles */
	MSG_BUNDLE = 0x44,         /* node: one record per device */

	MSG_FED_HELLO = 0x60,      /* node to node: who I am, whom I want */
	MSG_FED_WELCOME = 0x61,    /* node to node: link established */
	MSG_FED_ENV = 0x62,        /* node to node: an envelope for a device */
	MSG_FED_REQ = 0x63,        /* node to node: a client request relayed */
	MSG_FED_RESP = 0x64,       /* node to node: its answer */
	MSG_FED_RENV = 0x65,       /* node to node: a signed envelope, maybe
	                              through a backup relay */
	MSG_FED_PRESENCE = 0x66    /* node to node: a watched user's presence
	                              changed (push, unanswered) */
};

/* SEND/DELIVER class. */
enum msg_class {
	MSG_CLASS_MESSAGE = 1,   /* stored until delivered or expired */
	MSG_CLASS_RECEIPT = 2,   /* delivery/read receipt */
	MSG_CLASS_EPHEMERAL = 3  /* typing and the like: dropped if offline */
};

/* NOTICE kind. */
enum msg_notice_kind {
	MSG_NOTICE_EXPIRED = 1,  /* an envelope expired undelivered */
	MSG_NOTICE_REFUSED = 2   /* the recipient's node refused it */
};

/* PRIVACY_SET last_seen. */
enum msg_last_seen {
	MSG_LAST_SEEN_EVERYONE = 0, /* anyone who asks */
	MSG_LAST_SEEN_CONTACTS = 1, /* users in our contacts */
	MSG_LAST_SEEN_NOBODY = 2    /* no one */
};

/* PRESENCE state. */
enum msg_presence_state {
	MSG_PRESENCE_HIDDEN = 0,  /* not shown to the subscriber */
	MSG_PRESENCE_ONLINE = 1,  /* a device is connected */
	MSG_PRESENCE_OFFLINE = 2  /* none is; last_seen_ms says since when */
};

/* Text: borrowed from the decoded input, NOT NUL-terminated. */
struct msg_str {
	const char *p;    /* bytes, borrowed; may be NULL when len is 0 */
	size_t len;       /* their number */
};

/* Bytes: borrowed from the decoded input. */
struct msg_bytes {
	const uint8_t *p; /* bytes, borrowed; may be NULL when len is 0 */
	size_t len;       /* their number */
};

/*
 * The raw span of an ADDRLIST (items: u8 length + address) or RECORDS
 * (items: fixed-size records) field, without its u16 count. Walk an
 * ADDRLIST with msg_addrlist_next and RECORDS with msg_record; build them
 * with msg_addrlist_add and msg_record_add.
 */
struct msg_list {
	const uint8_t *p; /* first item, borrowed; may be NULL when empty */
	size_t len;       /* bytes of all items */
	uint16_t count;   /* items */
};

/* One struct per message type with fields, in wire order. */
struct msg_error {
	uint16_t code;              /* -TERN_E*, 1..65535 */
	struct msg_str detail;      /* UTF-8, <= MSG_ERROR_DETAIL_MAX */
};

struct msg_ping {
	uint64_t nonce;             /* echoed by PONG */
};

struct msg_pong {
	uint64_t nonce;             /* the PING's */
};

struct msg_register {
	struct msg_str user;        /* address to create */
	struct msg_str invite;      /* UTF-8 <= 64; empty if registration is
	                               open */
	struct msg_str device_name; /* UTF-8 <= 64, for the user's eyes */
};

struct msg_registered {
	uint32_t device_id;         /* >= 1 */
};

struct msg_login {
	struct msg_str user;        /* address */
	uint32_t device_id;         /* >= 1 */
};

struct msg_login_ok {
	uint64_t server_time_ms;    /* node clock, Unix ms */
	uint32_t queued;            /* envelopes waiting for this device */
};

struct msg_device_add {
	uint8_t new_device_key[MSG_KEY_LEN]; /* its Noise static public key */
	struct msg_str device_name; /* UTF-8 <= 64 */
};

struct msg_device_added {
	uint32_t device_id;         /* >= 1 */
};

struct msg_device_list {
	struct msg_str user;        /* whose devices */
};

struct msg_devices {
	struct msg_str user;        /* whose devices */
	struct msg_list device_ids; /* RECORDS of u32 ids, <= 64 */
};

struct msg_device_remove {
	uint32_t device_id;         /* >= 1 */
};

struct msg_send {
	uint8_t id[MSG_ID_LEN];     /* chosen by the sender, random */
	struct msg_str to;          /* recipient address */
	uint32_t to_device;         /* recipient device, >= 1 */
	uint8_t class;              /* enum msg_class */
	uint64_t timestamp_ms;      /* sender's clock, Unix ms */
	struct msg_bytes payload;   /* end-to-end ciphertext, <= 64 KiB */
};

struct msg_sent {
	uint8_t id[MSG_ID_LEN];     /* the SEND's */
};

struct msg_deliver {
	uint8_t id[MSG_ID_LEN];     /* the SEND's */
	struct msg_str from;        /* sender address */
	uint32_t from_device;       /* sender device, >= 1 */
	uint8_t class;              /* enum msg_class */
	uint64_t timestamp_ms;      /* sender's clock, Unix ms */
	uint64_t received_ms;       /* sender's node's clock at receipt */
	struct msg_bytes payload;   /* end-to-end ciphertext, <= 64 KiB */
};

struct msg_ack {
	uint8_t id[MSG_ID_LEN];     /* a DELIVER's id or a NOTICE's notice_id */
};

struct msg_notice {
	uint8_t notice_id[MSG_ID_LEN]; /* this notice, for ACK */
	uint8_t kind;               /* enum msg_notice_kind */
	uint8_t ref_id[MSG_ID_LEN]; /* the envelope it is about */
	struct msg_str peer;        /* the envelope's other party */
	uint32_t peer_device;       /* its device, >= 1 */
};

struct msg_profile_set {
	struct msg_str name;        /* UTF-8 <= 64 */
	struct msg_str status;      /* UTF-8 <= 256 */
};

struct msg_profile_get {
	struct msg_str user;        /* whose profile */
};

struct msg_profile {
	struct msg_str user;        /* whose profile */
	struct msg_str name;        /* UTF-8 <= 64 */
	struct msg_str status;      /* UTF-8 <= 256 */
};

struct msg_privacy_set {
	uint8_t last_seen;          /* enum msg_last_seen */
};

struct msg_contact_add {
	struct msg_str user;        /* address */
};

struct msg_contact_remove {
	struct msg_str user;        /* address */
};

struct msg_contacts {
	struct msg_list users;      /* ADDRLIST, <= MSG_CONTACTS_MAX */
};

struct msg_presence_sub {
	struct msg_str user;        /* address */
};

struct msg_presence_unsub {
	struct msg_str user;        /* address */
};

struct msg_presence {
	struct msg_str user;        /* whose presence */
	uint8_t state;              /* enum msg_presence_state */
	uint64_t last_seen_ms;      /* Unix ms; 0 when hidden or unknown */
};

struct msg_keys_put {
	uint8_t identity_key[MSG_KEY_LEN]; /* Curve25519 identity key */
	uint32_t registration_id;   /* 1..MSG_REG_ID_MAX */
	uint32_t signed_prekey_id;  /* 1..MSG_PREKEY_ID_MAX */
	uint8_t signed_prekey[MSG_KEY_LEN];
	uint8_t signature[MSG_SIG_LEN]; /* XEdDSA by identity_key over
	                               0x05 || signed_prekey */
	uint8_t last_resort[MSG_KEY_LEN]; /* prekey MSG_LAST_RESORT_ID */
	struct msg_list prekeys;    /* RECORDS of MSG_PREKEY_REC_LEN: u32 id
	                               (1..MSG_PREKEY_ID_MAX), KEY32 */
};

struct msg_keys_count {
	uint32_t prekeys;           /* one-time prekeys left */
	uint32_t signed_prekey_id;  /* the node's current one; 0: none */
};

struct msg_bundle_get {
	struct msg_str user;        /* whose bundles */
	uint32_t device_id;         /* one device, or 0: all of them */
};

struct msg_bundle {
	struct msg_str user;        /* whose bundles */
	struct msg_list devices;    /* RECORDS of MSG_BUNDLE_REC_LEN, <= 64 */
};

struct msg_fed_hello {
	struct msg_str domain;      /* the initiator's domain */
	struct msg_str to_domain;   /* the domain it wants */
	uint64_t time_ms;           /* its clock */
};

struct msg_fed_welcome {
	struct msg_str domain;      /* the responder's domain */
	uint64_t time_ms;           /* its clock */
};

struct msg_fed_env {
	uint8_t id[MSG_ID_LEN];     /* the SEND's */
	struct msg_str from;        /* sender, in the link's domain */
	uint32_t from_device;       /* >= 1 */
	struct msg_str to;          /* recipient, in the responder's domain */
	uint32_t to_device;         /* >= 1 */
	uint8_t class;              /* enum msg_class */
	uint64_t timestamp_ms;      /* sender's clock */
	uint64_t received_ms;       /* origin node's clock at the SEND */
	struct msg_bytes payload;   /* <= MSG_PAYLOAD_MAX */
};

/* FED_RENV: FED_ENV's fields in the same order, then the origin node's
 * signature of them (crypto/nodesig.h). */
struct msg_fed_renv {
	struct msg_fed_env env;     /* as FED_ENV; from is in the origin's
	                               domain, not necessarily the link's */
	uint8_t sig[MSG_SIG_LEN];   /* XEdDSA by the origin node's key */
};

/* FED_PRESENCE: what viewer `to` (at the responder) may see of `user`
 * (at the initiator), after the user's privacy. */
struct msg_fed_presence {
	struct msg_str to;          /* the watching user, responder's domain */
	struct msg_str user;        /* whose presence, initiator's domain */
	uint8_t state;              /* enum msg_presence_state */
	uint64_t last_seen_ms;      /* Unix ms; 0 when hidden */
};

struct msg_fed_req {
	struct msg_str requester;   /* the local user asking, at the origin */
	struct msg_bytes request;   /* an encoded client request */
};

struct msg_fed_resp {
	struct msg_bytes response;  /* the encoded answer */
};

/* A message of any type. OK, CONTACT_LIST and KEYS_STATUS have no fields
 * and so no member. */
struct msg {
	uint8_t type;               /* enum msg_type */
	uint32_t req;               /* request id; 0 for pushes */
	union {
		struct msg_error error;             /* ERROR */
		struct msg_ping ping;               /* PING */
		struct msg_pong pong;               /* PONG */
		struct msg_register reg;            /* REGISTER (a C keyword) */
		struct msg_registered registered;   /* REGISTERED */
		struct msg_login login;             /* LOGIN */
		struct msg_login_ok login_ok;       /* LOGIN_OK */
		struct msg_device_add device_add;   /* DEVICE_ADD */
		struct msg_device_added device_added; /* DEVICE_ADDED */
		struct msg_device_list device_list; /* DEVICE_LIST */
		struct msg_devices devices;         /* DEVICES */
		struct msg_device_remove device_remove; /* DEVICE_REMOVE */
		struct msg_send send;               /* SEND */
		struct msg_sent sent;               /* SENT */
		struct msg_deliver deliver;         /* DELIVER */
		struct msg_ack ack;                 /* ACK */
		struct msg_notice notice;           /* NOTICE */
		struct msg_profile_set profile_set; /* PROFILE_SET */
		struct msg_profile_get profile_get; /* PROFILE_GET */
		struct msg_profile profile;         /* PROFILE */
		struct msg_privacy_set privacy_set; /* PRIVACY_SET */
		struct msg_contact_add contact_add; /* CONTACT_ADD */
		struct msg_contact_remove contact_remove; /* CONTACT_REMOVE */
		struct msg_contacts contacts;       /* CONTACTS */
		struct msg_presence_sub presence_sub; /* PRESENCE_SUB */
		struct msg_presence_unsub presence_unsub; /* PRESENCE_UNSUB */
		struct msg_presence presence;       /* PRESENCE */
		struct msg_keys_put keys_put;       /* KEYS_PUT */
		struct msg_keys_count keys_count;   /* KEYS_COUNT */
		struct msg_bundle_get bundle_get;   /* BUNDLE_GET */
		struct msg_bundle bundle;           /* BUNDLE */
		struct msg_fed_hello fed_hello;     /* FED_HELLO */
		struct msg_fed_welcome fed_welcome; /* FED_WELCOME */
		struct msg_fed_env fed_env;         /* FED_ENV */
		struct msg_fed_req fed_req;         /* FED_REQ */
		struct msg_fed_resp fed_resp;       /* FED_RESP */
		struct msg_fed_renv fed_renv;       /* FED_RENV */
		struct msg_fed_presence fed_presence; /* FED_PRESENCE */
	} u;                        /* the member named after type */
};

/*
 * msg_decode: parses in[0..len) into out. out's strings, bytes and lists
 * point into in, which must outlive out. Errors, in the order the bytes
 * are met:
 *   TERN_ETOOBIG    len > MSG_MAX, or a declared length/count over the
 *                   field's cap (checked before the bytes are looked for)
 *   TERN_ETRUNC     the input ends inside a field
 *   TERN_EVERSION   version is not MSG_VERSION
 *   TERN_ETYPE      unknown type
 *   TERN_EFIELD     an integer out of its range, an invalid address or
 *                   domain
 *   TERN_EUTF8      a text field is not strict UTF-8 or holds a NUL
 *   TERN_ETRAILING  bytes after the last field
 * On failure out is zeroed.
 */
int msg_decode(const uint8_t *in, size_t len, struct msg *out) TERN_WUR;

/*
 * msg_peek_header reads only the header, so that a message msg_decode
 * refused can still be answered: the ERROR echoes the req of the request
 * it answers, and an ERROR is never answered at all. TERN_ETRUNC for fewer
 * than MSG_HDR_LEN bytes, TERN_EVERSION for another version; the type is
 * not checked and the body not looked at.
 */
int msg_peek_header(const uint8_t *in, size_t len, uint8_t *type,
    uint32_t *req) TERN_WUR;

/*
 * msg_encode: writes m to out[0..cap) and its length to *outlen. Checks
 * every field as msg_decode would and fails with the code msg_decode would
 * give those bytes; TERN_ETYPE for an unknown type, TERN_ETOOBIG when cap
 * is too small or the result would pass MSG_MAX, TERN_EINVAL for a
 * malformed struct (NULL pointer with a length, a list span that does not
 * match its count). On failure *outlen is 0 and out holds nothing useful.
 */
int msg_encode(const struct msg *m, uint8_t *out, size_t cap,
    size_t *outlen) TERN_WUR;

/* msg_encoded_size: bytes msg_encode needs for m, or 0 if it would refuse
 * m whatever the buffer (no valid message is shorter than MSG_HDR_LEN). */
size_t msg_encoded_size(const struct msg *m);

/* msg_type_name: "SEND" for MSG_SEND; "UNKNOWN" for a code that is not in
 * the catalogue. Static text. */
const char *msg_type_name(uint8_t type);
/* 1 if type is in the catalogue, else 0. */
int msg_type_known(uint8_t type);

/*
 * msg_addrlist_next walks an ADDRLIST: start with *pos = 0; each call
 * returns 1 and points addr at the next address (borrowed from l), or 0
 * at the end, or TERN_ETRUNC if the span is malformed (never for a list
 * msg_decode returned or msg_addrlist_add built).
 */
int msg_addrlist_next(const struct msg_list *l, size_t *pos,
    struct msg_str *addr);

/*
 * msg_addrlist_add appends addr to an ADDRLIST being built in w's buffer
 * (start with an empty l and a fresh writer; use one writer per list) and
 * points l at what w holds. TERN_EFIELD for an invalid address,
 * TERN_ETOOBIG when w is full or the count would pass 65535.
 */
int msg_addrlist_add(struct msg_list *l, struct buf_writer *w,
    const char *addr, size_t len) TERN_WUR;

/* msg_record: the i-th record of a RECORDS list of reclen-byte records,
 * or NULL if i is out of range. */
const uint8_t *msg_record(const struct msg_list *l, size_t reclen,
    size_t i);

/* msg_record_add appends one reclen-byte record, like msg_addrlist_add. */
int msg_record_add(struct msg_list *l, struct buf_writer *w,
    const uint8_t *rec, size_t reclen) TERN_WUR;

/*
 * The table the codec walks, exposed so tests can exercise field kinds no
 * v1 message uses yet (DOMAIN, SIG64, BYTES16) and so later modules can
 * describe sub-encodings of their own with the same rules.
 */
enum msg_kind {
	MSG_K_U8 = 1,   /* uint8_t, range min..max */
	MSG_K_U16,      /* uint16_t, range min..max */
	MSG_K_U32,      /* uint32_t, range min..max */
	MSG_K_U64,      /* uint64_t, range min..max */
	MSG_K_ID16,     /* uint8_t[16] */
	MSG_K_KEY32,    /* uint8_t[32] */
	MSG_K_SIG64,    /* uint8_t[64] */
	MSG_K_ADDR,     /* msg_str: u8 length + user address */
	MSG_K_DOMAIN,   /* msg_str: u8 length + domain name */
	MSG_K_STR8,     /* msg_str: u8 length + UTF-8, length <= max */
	MSG_K_STR16,    /* msg_str: u16 length + UTF-8, length <= max */
	MSG_K_BYTES16,  /* msg_bytes: u16 length + bytes, length <= max */
	MSG_K_BYTES32,  /* msg_bytes: u32 length + bytes, length <= max */
	MSG_K_ADDRLIST, /* msg_list: u16 count + count ADDRs, count <= max */
	MSG_K_RECORDS   /* msg_list: u16 count + count records of reclen
	                   bytes, count <= max */
};

struct msg_field {
	const char *name;  /* as in the spec, for diagnostics */
	uint8_t kind;      /* enum msg_kind */
	uint16_t off;      /* offsetof the member in the typed struct */
	uint16_t reclen;   /* RECORDS: bytes per record (>= 1) */
	uint64_t min;      /* integers: smallest valid value */
	uint64_t max;      /* integers: largest valid value; others: the
	                      cap on length or count */
};

struct msg_desc {
	const char *name;               /* "SEND" */
	const struct msg_field *fields; /* in wire order */
	size_t nfields;                 /* how many */
};

/* msg_desc_get: the descriptor of a catalogue type, or NULL. */
const struct msg_desc *msg_desc_get(uint8_t type);

/*
 * msg_body_decode / msg_body_encode: the fields of d, read from r into the
 * typed struct at out, or written from the one at in to w. They neither
 * read nor write a header and do not check for trailing bytes; errors as
 * for msg_decode and msg_encode. On failure r's position and w's contents
 * are unspecified.
 */
int msg_body_decode(const struct msg_desc *d, struct buf_reader *r,
    void *out) TERN_WUR;
int msg_body_encode(const struct msg_desc *d, const void *in,
    struct buf_writer *w) TERN_WUR;

#endif
