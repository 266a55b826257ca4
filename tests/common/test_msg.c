/*
 * test_msg.c: the message codec (common/msg.h).
 *
 * Three kinds of check: golden bytes for one representative message of
 * every type, written out by hand so the layout is pinned independently
 * of the table; a copy of the catalogue's field list and limits, so a
 * changed cap or range shows up as a failing test; and generic walks over
 * the table (every type at its minimum and maximum, every cap and range
 * exceeded by one, every prefix of every encoding).
 */
#include "tt.h"

#include "buf.h"
#include "ident.h"
#include "msg.h"

#define S(lit) ((struct msg_str){ (lit), sizeof(lit) - 1 })
#define BYTES(lit) ((struct msg_bytes){ (const uint8_t *)(lit), \
	sizeof(lit) - 1 })

static const uint8_t id_a[MSG_ID_LEN] = {
	0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
	0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f
};
static const uint8_t id_b[MSG_ID_LEN] = {
	0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17,
	0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f
};

#define TS UINT64_C(1700000000000)   /* 0x0000018bcfe56800 */
#define RCV UINT64_C(1700000000500)  /* 0x0000018bcfe569f4 */
#define REQ 0x01020304u

/* Hex pieces shared by the golden encodings below. */
#define H_ALICE "0c 616c69636540612e74657374 "   /* "alice@a.test" */
#define H_BOB "0a 626f6240622e74657374 "         /* "bob@b.test" */
#define H_IDA "000102030405060708090a0b0c0d0e0f "
#define H_IDB "101112131415161718191a1b1c1d1e1f "
#define H_TS "0000018bcfe56800 "
#define H_RCV "0000018bcfe569f4 "
#define H_KEY "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" \
	"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa "
#define H_SIG "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb" \
	"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb" \
	"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb" \
	"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb "
#define H_REQ "01020304 "
#define H_PUSH "00000000 "

struct golden {
	uint8_t type;    /* message type */
	const char *hex; /* its encoding; spaces are ignored */
};

static const struct golden goldens[] = {
	{ MSG_ERROR,
	    "01"                          /* version 1 */
	    "01"                          /* type ERROR */
	    "01020304"                    /* req */
	    "0014"                        /* code 20, TERN_ENOUSER */
	    "000c"                        /* detail: 12 bytes */
	    "6e6f20737563682075736572" }, /* "no such user" */
	{ MSG_PING, "01 02 " H_REQ "0102030405060708" },
	{ MSG_PONG, "01 03 " H_REQ "0102030405060708" },
	{ MSG_OK, "01 04 " H_REQ },
	{ MSG_REGISTER, "01 10 " H_REQ H_ALICE "00 05 70686f6e65" },
	{ MSG_REGISTERED, "01 11 " H_REQ "00000001" },
	{ MSG_LOGIN, "01 12 " H_REQ H_ALICE "00000001" },
	{ MSG_LOGIN_OK, "01 13 " H_REQ H_TS "00000003" },
	{ MSG_DEVICE_ADD, "01 14 " H_REQ H_KEY "06 6c6170746f70" },
	{ MSG_DEVICE_ADDED, "01 15 " H_REQ "00000002" },
	{ MSG_DEVICE_LIST, "01 16 " H_REQ H_BOB },
	{ MSG_DEVICES, "01 17 " H_REQ H_BOB "0002 00000001 00000002" },
	{ MSG_DEVICE_REMOVE, "01 18 " H_REQ "00000002" },
	{ MSG_SEND,
	    "01"                               /* version 1 */
	    "20"                               /* type SEND */
	    "01020304"                         /* req */
	    "000102030405060708090a0b0c0d0e0f" /* id */
	    "0a"                               /* to: 10 bytes */
	    "626f6240622e74657374"             /* "bob@b.test" */
	    "00000002"                         /* to_device 2 */
	    "01"                               /* class 1, message */
	    "0000018bcfe56800"                 /* timestamp_ms */
	    "00000004"                         /* payload: 4 bytes */
	    "deadbeef" },
	{ MSG_SENT, "01 21 " H_REQ H_IDA },
	{ MSG_DELIVER, "01 22 " H_PUSH H_IDA H_ALICE "00000001 01 " H_TS H_RCV
	    "00000004 deadbeef" },
	{ MSG_ACK, "01 23 " H_REQ H_IDA },
	{ MSG_NOTICE, "01 24 " H_PUSH H_IDB "01 " H_IDA H_BOB "00000002" },
	{ MSG_PROFILE_SET, "01 30 " H_REQ "05 416c696365 0006 68c3a96c6c6f" },
	{ MSG_PROFILE_GET, "01 31 " H_REQ H_BOB },
	{ MSG_PROFILE, "01 32 " H_REQ H_BOB "03 426f62 0000" },
	{ MSG_PRIVACY_SET, "01 33 " H_REQ "01" },
	{ MSG_CONTACT_ADD, "01 34 " H_REQ H_BOB },
	{ MSG_CONTACT_REMOVE, "01 35 " H_REQ H_BOB },
	{ MSG_CONTACT_LIST, "01 36 " H_REQ },
	{ MSG_CONTACTS, "01 37 " H_REQ "0002 " H_ALICE H_BOB },
	{ MSG_PRESENCE_SUB, "01 38 " H_REQ H_BOB },
	{ MSG_PRESENCE_UNSUB, "01 39 " H_REQ H_BOB },
	{ MSG_PRESENCE, "01 3a " H_PUSH H_BOB "02 " H_TS },
	{ MSG_KEYS_PUT, "01 40 " H_REQ H_KEY "00000007 00000001 " H_KEY H_SIG
	    H_KEY "0001 00000005 " H_KEY },
	{ MSG_KEYS_STATUS, "01 41 " H_REQ },
	{ MSG_KEYS_COUNT, "01 42 " H_REQ "00000009 00000001" },
	{ MSG_BUNDLE_GET, "01 43 " H_REQ H_BOB "00000000" },
	{ MSG_BUNDLE, "01 44 " H_REQ H_BOB "0001 "
	    "00000002 00000007 " H_KEY "00000001 " H_KEY H_SIG
	    "00000005 " H_KEY },
	{ MSG_FED_HELLO, "01 60 " H_REQ "06 612e74657374 06 622e74657374 "
	    H_TS },
	{ MSG_FED_WELCOME, "01 61 " H_REQ "06 622e74657374 " H_TS },
	{ MSG_FED_ENV, "01 62 " H_REQ H_IDA H_ALICE "00000001 " H_BOB
	    "00000002 01 " H_TS H_RCV "00000004 deadbeef" },
	{ MSG_FED_REQ, "01 63 " H_REQ H_ALICE "0004 deadbeef" },
	{ MSG_FED_RESP, "01 64 " H_REQ "00000004 deadbeef" },
	{ MSG_FED_RENV, "01 65 " H_REQ H_IDA H_ALICE "00000001 " H_BOB
	    "00000002 01 " H_TS H_RCV "00000004 deadbeef " H_SIG },
	{ MSG_FED_PRESENCE, "01 66 " H_REQ H_BOB H_ALICE "01 " H_TS },
};
#define NGOLDEN (sizeof(goldens) / sizeof(goldens[0]))

/* Every type code of the v1 catalogue. */
static const uint8_t catalogue[] = {
	0x01, 0x02, 0x03, 0x04,
	0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18,
	0x20, 0x21, 0x22, 0x23, 0x24,
	0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a,
	0x40, 0x41, 0x42, 0x43, 0x44,
	0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66,
};

/* Decodes hex with spaces into out; returns the length. */
static size_t
hx(const char *hex, uint8_t *out, size_t cap)
{
	char clean[8192];
	size_t n = 0;
	long r;

	for (; *hex != '\0'; hex++) {
		if (*hex == ' ')
			continue;
		TT_ASSERT(n < sizeof(clean));
		clean[n++] = *hex;
	}
	r = tt_unhex(clean, n, out, cap);
	TT_ASSERT(r >= 0);
	return (size_t)r;
}

static const struct golden *
golden_for(uint8_t type)
{
	size_t i;

	for (i = 0; i < NGOLDEN; i++)
		if (goldens[i].type == type)
			return &goldens[i];
	return NULL;
}

/* Buffers the list samples are built in; static so they outlive the
 * sample() call. */
static uint8_t devices_buf[2 * MSG_DEVICE_REC_LEN];
static uint8_t contacts_buf[64];
static uint8_t prekeys_buf[MSG_PREKEY_REC_LEN];
static uint8_t bundle_buf[MSG_BUNDLE_REC_LEN];

/* The struct each golden encoding was written from. */
static void
sample(uint8_t type, struct msg *m)
{
	struct buf_writer w;
	uint8_t rec[4];
	uint8_t brec[MSG_BUNDLE_REC_LEN];

	memset(m, 0, sizeof(*m));
	m->type = type;
	m->req = REQ;
	switch (type) {
	case MSG_ERROR:
		m->u.error.code = (uint16_t)-TERN_ENOUSER;
		m->u.error.detail = S("no such user");
		break;
	case MSG_PING:
		m->u.ping.nonce = UINT64_C(0x0102030405060708);
		break;
	case MSG_PONG:
		m->u.pong.nonce = UINT64_C(0x0102030405060708);
		break;
	case MSG_OK:
	case MSG_CONTACT_LIST:
		break;
	case MSG_REGISTER:
		m->u.reg.user = S("alice@a.test");
		m->u.reg.invite = S("");
		m->u.reg.device_name = S("phone");
		break;
	case MSG_REGISTERED:
		m->u.registered.device_id = 1;
		break;
	case MSG_LOGIN:
		m->u.login.user = S("alice@a.test");
		m->u.login.device_id = 1;
		break;
	case MSG_LOGIN_OK:
		m->u.login_ok.server_time_ms = TS;
		m->u.login_ok.queued = 3;
		break;
	case MSG_DEVICE_ADD:
		memset(m->u.device_add.new_device_key, 0xaa, MSG_KEY_LEN);
		m->u.device_add.device_name = S("laptop");
		break;
	case MSG_DEVICE_ADDED:
		m->u.device_added.device_id = 2;
		break;
	case MSG_DEVICE_LIST:
		m->u.device_list.user = S("bob@b.test");
		break;
	case MSG_DEVICES:
		m->u.devices.user = S("bob@b.test");
		buf_writer_init(&w, devices_buf, sizeof(devices_buf));
		buf_store_be32(rec, 1);
		TT_OK(msg_record_add(&m->u.devices.device_ids, &w, rec, 4));
		buf_store_be32(rec, 2);
		TT_OK(msg_record_add(&m->u.devices.device_ids, &w, rec, 4));
		break;
	case MSG_DEVICE_REMOVE:
		m->u.device_remove.device_id = 2;
		break;
	case MSG_SEND:
		memcpy(m->u.send.id, id_a, MSG_ID_LEN);
		m->u.send.to = S("bob@b.test");
		m->u.send.to_device = 2;
		m->u.send.class = MSG_CLASS_MESSAGE;
		m->u.send.timestamp_ms = TS;
		m->u.send.payload = BYTES("\xde\xad\xbe\xef");
		break;
	case MSG_SENT:
		memcpy(m->u.sent.id, id_a, MSG_ID_LEN);
		break;
	case MSG_DELIVER:
		m->req = 0;
		memcpy(m->u.deliver.id, id_a, MSG_ID_LEN);
		m->u.deliver.from = S("alice@a.test");
		m->u.deliver.from_device = 1;
		m->u.deliver.class = MSG_CLASS_MESSAGE;
		m->u.deliver.timestamp_ms = TS;
		m->u.deliver.received_ms = RCV;
		m->u.deliver.payload = BYTES("\xde\xad\xbe\xef");
		break;
	case MSG_ACK:
		memcpy(m->u.ack.id, id_a, MSG_ID_LEN);
		break;
	case MSG_NOTICE:
		m->req = 0;
		memcpy(m->u.notice.notice_id, id_b, MSG_ID_LEN);
		m->u.notice.kind = MSG_NOTICE_EXPIRED;
		memcpy(m->u.notice.ref_id, id_a, MSG_ID_LEN);
		m->u.notice.peer = S("bob@b.test");
		m->u.notice.peer_device = 2;
		break;
	case MSG_PROFILE_SET:
		m->u.profile_set.name = S("Alice");
		m->u.profile_set.status = S("h\xc3\xa9llo");
		break;
	case MSG_PROFILE_GET:
		m->u.profile_get.user = S("bob@b.test");
		break;
	case MSG_PROFILE:
		m->u.profile.user = S("bob@b.test");
		m->u.profile.name = S("Bob");
		m->u.profile.status = S("");
		break;
	case MSG_PRIVACY_SET:
		m->u.privacy_set.last_seen = MSG_LAST_SEEN_CONTACTS;
		break;
	case MSG_CONTACT_ADD:
		m->u.contact_add.user = S("bob@b.test");
		break;
	case MSG_CONTACT_REMOVE:
		m->u.contact_remove.user = S("bob@b.test");
		break;
	case MSG_CONTACTS:
		buf_writer_init(&w, contacts_buf, sizeof(contacts_buf));
		TT_OK(msg_addrlist_add(&m->u.contacts.users, &w,
		    "alice@a.test", 12));
		TT_OK(msg_addrlist_add(&m->u.contacts.users, &w,
		    "bob@b.test", 10));
		break;
	case MSG_PRESENCE_SUB:
		m->u.presence_sub.user = S("bob@b.test");
		break;
	case MSG_PRESENCE_UNSUB:
		m->u.presence_unsub.user = S("bob@b.test");
		break;
	case MSG_PRESENCE:
		m->req = 0;
		m->u.presence.user = S("bob@b.test");
		m->u.presence.state = MSG_PRESENCE_OFFLINE;
		m->u.presence.last_seen_ms = TS;
		break;
	case MSG_KEYS_PUT:
		memset(m->u.keys_put.identity_key, 0xaa, MSG_KEY_LEN);
		m->u.keys_put.registration_id = 7;
		m->u.keys_put.signed_prekey_id = 1;
		memset(m->u.keys_put.signed_prekey, 0xaa, MSG_KEY_LEN);
		memset(m->u.keys_put.signature, 0xbb, MSG_SIG_LEN);
		memset(m->u.keys_put.last_resort, 0xaa, MSG_KEY_LEN);
		buf_writer_init(&w, prekeys_buf, sizeof(prekeys_buf));
		buf_store_be32(brec, 5);
		memset(brec + 4, 0xaa, MSG_KEY_LEN);
		TT_OK(msg_record_add(&m->u.keys_put.prekeys, &w, brec,
		    MSG_PREKEY_REC_LEN));
		break;
	case MSG_KEYS_STATUS:
		break;
	case MSG_KEYS_COUNT:
		m->u.keys_count.prekeys = 9;
		m->u.keys_count.signed_prekey_id = 1;
		break;
	case MSG_BUNDLE_GET:
		m->u.bundle_get.user = S("bob@b.test");
		m->u.bundle_get.device_id = 0;
		break;
	case MSG_BUNDLE:
		m->u.bundle.user = S("bob@b.test");
		buf_store_be32(brec, 2);
		buf_store_be32(brec + 4, 7);
		memset(brec + 8, 0xaa, 32);
		buf_store_be32(brec + 40, 1);
		memset(brec + 44, 0xaa, 32);
		memset(brec + 76, 0xbb, 64);
		buf_store_be32(brec + 140, 5);
		memset(brec + 144, 0xaa, 32);
		buf_writer_init(&w, bundle_buf, sizeof(bundle_buf));
		TT_OK(msg_record_add(&m->u.bundle.devices, &w, brec,
		    MSG_BUNDLE_REC_LEN));
		break;
	case MSG_FED_HELLO:
		m->u.fed_hello.domain = S("a.test");
		m->u.fed_hello.to_domain = S("b.test");
		m->u.fed_hello.time_ms = TS;
		break;
	case MSG_FED_WELCOME:
		m->u.fed_welcome.domain = S("b.test");
		m->u.fed_welcome.time_ms = TS;
		break;
	case MSG_FED_ENV:
		memcpy(m->u.fed_env.id, id_a, MSG_ID_LEN);
		m->u.fed_env.from = S("alice@a.test");
		m->u.fed_env.from_device = 1;
		m->u.fed_env.to = S("bob@b.test");
		m->u.fed_env.to_device = 2;
		m->u.fed_env.class = MSG_CLASS_MESSAGE;
		m->u.fed_env.timestamp_ms = TS;
		m->u.fed_env.received_ms = RCV;
		m->u.fed_env.payload = BYTES("\xde\xad\xbe\xef");
		break;
	case MSG_FED_REQ:
		m->u.fed_req.requester = S("alice@a.test");
		m->u.fed_req.request = BYTES("\xde\xad\xbe\xef");
		break;
	case MSG_FED_RESP:
		m->u.fed_resp.response = BYTES("\xde\xad\xbe\xef");
		break;
	case MSG_FED_RENV:
		memcpy(m->u.fed_renv.env.id, id_a, MSG_ID_LEN);
		m->u.fed_renv.env.from = S("alice@a.test");
		m->u.fed_renv.env.from_device = 1;
		m->u.fed_renv.env.to = S("bob@b.test");
		m->u.fed_renv.env.to_device = 2;
		m->u.fed_renv.env.class = MSG_CLASS_MESSAGE;
		m->u.fed_renv.env.timestamp_ms = TS;
		m->u.fed_renv.env.received_ms = RCV;
		m->u.fed_renv.env.payload = BYTES("\xde\xad\xbe\xef");
		memset(m->u.fed_renv.sig, 0xbb, MSG_SIG_LEN);
		break;
	case MSG_FED_PRESENCE:
		m->u.fed_presence.to = S("bob@b.test");
		m->u.fed_presence.user = S("alice@a.test");
		m->u.fed_presence.state = MSG_PRESENCE_ONLINE;
		m->u.fed_presence.last_seen_ms = TS;
		break;
	default:
		tt_fail(__FILE__, __LINE__, "no sample for type 0x%02x", type);
	}
}

/*
 * The catalogue as the brief states it: every field of every type in
 * order, with its kind and limits. A change to the table that is not also
 * a change here is a protocol change nobody meant.
 */
struct pin {
	uint8_t type;     /* message type */
	const char *name; /* field name */
	uint8_t kind;     /* enum msg_kind */
	uint64_t min;     /* integer minimum, else 0 */
	uint64_t max;     /* integer maximum or cap, 0 for fixed sizes */
	uint16_t reclen;  /* RECORDS record size, else 0 */
};

#define U64MAX UINT64_MAX
static const struct pin pins[] = {
	{ MSG_ERROR, "code", MSG_K_U16, 1, 65535, 0 },
	{ MSG_ERROR, "detail", MSG_K_STR16, 0, 1024, 0 },
	{ MSG_PING, "nonce", MSG_K_U64, 0, U64MAX, 0 },
	{ MSG_PONG, "nonce", MSG_K_U64, 0, U64MAX, 0 },
	{ MSG_REGISTER, "user", MSG_K_ADDR, 0, 255, 0 },
	{ MSG_REGISTER, "invite", MSG_K_STR8, 0, 64, 0 },
	{ MSG_REGISTER, "device_name", MSG_K_STR8, 0, 64, 0 },
	{ MSG_REGISTERED, "device_id", MSG_K_U32, 1, 0xffffffff, 0 },
	{ MSG_LOGIN, "user", MSG_K_ADDR, 0, 255, 0 },
	{ MSG_LOGIN, "device_id", MSG_K_U32, 1, 0xffffffff, 0 },
	{ MSG_LOGIN_OK, "server_time_ms", MSG_K_U64, 0, U64MAX, 0 },
	{ MSG_LOGIN_OK, "queued", MSG_K_U32, 0, 0xffffffff, 0 },
	{ MSG_DEVICE_ADD, "new_device_key", MSG_K_KEY32, 0, 0, 0 },
	{ MSG_DEVICE_ADD, "device_name", MSG_K_STR8, 0, 64, 0 },
	{ MSG_DEVICE_ADDED, "device_id", MSG_K_U32, 1, 0xffffffff, 0 },
	{ MSG_DEVICE_LIST, "user", MSG_K_ADDR, 0, 255, 0 },
	{ MSG_DEVICES, "user", MSG_K_ADDR, 0, 255, 0 },
	{ MSG_DEVICES, "device_ids", MSG_K_RECORDS, 0, 64, 4 },
	{ MSG_DEVICE_REMOVE, "device_id", MSG_K_U32, 1, 0xffffffff, 0 },
	{ MSG_SEND, "id", MSG_K_ID16, 0, 0, 0 },
	{ MSG_SEND, "to", MSG_K_ADDR, 0, 255, 0 },
	{ MSG_SEND, "to_device", MSG_K_U32, 1, 0xffffffff, 0 },
	{ MSG_SEND, "class", MSG_K_U8, 1, 3, 0 },
	{ MSG_SEND, "timestamp_ms", MSG_K_U64, 0, U64MAX, 0 },
	{ MSG_SEND, "payload", MSG_K_BYTES32, 0, 65536, 0 },
	{ MSG_SENT, "id", MSG_K_ID16, 0, 0, 0 },
	{ MSG_DELIVER, "id", MSG_K_ID16, 0, 0, 0 },
	{ MSG_DELIVER, "from", MSG_K_ADDR, 0, 255, 0 },
	{ MSG_DELIVER, "from_device", MSG_K_U32, 1, 0xffffffff, 0 },
	{ MSG_DELIVER, "class", MSG_K_U8, 1, 3, 0 },
	{ MSG_DELIVER, "timestamp_ms", MSG_K_U64, 0, U64MAX, 0 },
	{ MSG_DELIVER, "received_ms", MSG_K_U64, 0, U64MAX, 0 },
	{ MSG_DELIVER, "payload", MSG_K_BYTES32, 0, 65536, 0 },
	{ MSG_ACK, "id", MSG_K_ID16, 0, 0, 0 },
	{ MSG_NOTICE, "notice_id", MSG_K_ID16, 0, 0, 0 },
	{ MSG_NOTICE, "kind", MSG_K_U8, 1, 2, 0 },
	{ MSG_NOTICE, "ref_id", MSG_K_ID16, 0, 0, 0 },
	{ MSG_NOTICE, "peer", MSG_K_ADDR, 0, 255, 0 },
	{ MSG_NOTICE, "peer_device", MSG_K_U32, 1, 0xffffffff, 0 },
	{ MSG_PROFILE_SET, "name", MSG_K_STR8, 0, 64, 0 },
	{ MSG_PROFILE_SET, "status", MSG_K_STR16, 0, 256, 0 },
	{ MSG_PROFILE_GET, "user", MSG_K_ADDR, 0, 255, 0 },
	{ MSG_PROFILE, "user", MSG_K_ADDR, 0, 255, 0 },
	{ MSG_PROFILE, "name", MSG_K_STR8, 0, 64, 0 },
	{ MSG_PROFILE, "status", MSG_K_STR16, 0, 256, 0 },
	{ MSG_PRIVACY_SET, "last_seen", MSG_K_U8, 0, 2, 0 },
	{ MSG_CONTACT_ADD, "user", MSG_K_ADDR, 0, 255, 0 },
	{ MSG_CONTACT_REMOVE, "user", MSG_K_ADDR, 0, 255, 0 },
	{ MSG_CONTACTS, "users", MSG_K_ADDRLIST, 0, 256, 0 },
	{ MSG_PRESENCE_SUB, "user", MSG_K_ADDR, 0, 255, 0 },
	{ MSG_PRESENCE_UNSUB, "user", MSG_K_ADDR, 0, 255, 0 },
	{ MSG_PRESENCE, "user", MSG_K_ADDR, 0, 255, 0 },
	{ MSG_PRESENCE, "state", MSG_K_U8, 0, 2, 0 },
	{ MSG_PRESENCE, "last_seen_ms", MSG_K_U64, 0, U64MAX, 0 },
	{ MSG_KEYS_PUT, "identity_key", MSG_K_KEY32, 0, 0, 0 },
	{ MSG_KEYS_PUT, "registration_id", MSG_K_U32, 1, 16380, 0 },
	{ MSG_KEYS_PUT, "signed_prekey_id", MSG_K_U32, 1, 0xFFFFFE, 0 },
	{ MSG_KEYS_PUT, "signed_prekey", MSG_K_KEY32, 0, 0, 0 },
	{ MSG_KEYS_PUT, "signature", MSG_K_SIG64, 0, 0, 0 },
	{ MSG_KEYS_PUT, "last_resort", MSG_K_KEY32, 0, 0, 0 },
	{ MSG_KEYS_PUT, "prekeys", MSG_K_RECORDS, 0, 100, 36 },
	{ MSG_KEYS_COUNT, "prekeys", MSG_K_U32, 0, 0xFFFFFFFF, 0 },
	{ MSG_KEYS_COUNT, "signed_prekey_id", MSG_K_U32, 0, 0xFFFFFE, 0 },
	{ MSG_BUNDLE_GET, "user", MSG_K_ADDR, 0, 255, 0 },
	{ MSG_BUNDLE_GET, "device_id", MSG_K_U32, 0, 0xFFFFFFFF, 0 },
	{ MSG_BUNDLE, "user", MSG_K_ADDR, 0, 255, 0 },
	{ MSG_BUNDLE, "devices", MSG_K_RECORDS, 0, 64, 176 },
	{ MSG_FED_HELLO, "domain", MSG_K_DOMAIN, 0, 253, 0 },
	{ MSG_FED_HELLO, "to_domain", MSG_K_DOMAIN, 0, 253, 0 },
	{ MSG_FED_HELLO, "time_ms", MSG_K_U64, 0, U64MAX, 0 },
	{ MSG_FED_WELCOME, "domain", MSG_K_DOMAIN, 0, 253, 0 },
	{ MSG_FED_WELCOME, "time_ms", MSG_K_U64, 0, U64MAX, 0 },
	{ MSG_FED_ENV, "id", MSG_K_ID16, 0, 0, 0 },
	{ MSG_FED_ENV, "from", MSG_K_ADDR, 0, 255, 0 },
	{ MSG_FED_ENV, "from_device", MSG_K_U32, 1, 0xFFFFFFFF, 0 },
	{ MSG_FED_ENV, "to", MSG_K_ADDR, 0, 255, 0 },
	{ MSG_FED_ENV, "to_device", MSG_K_U32, 1, 0xFFFFFFFF, 0 },
	{ MSG_FED_ENV, "class", MSG_K_U8, 1, 3, 0 },
	{ MSG_FED_ENV, "timestamp_ms", MSG_K_U64, 0, U64MAX, 0 },
	{ MSG_FED_ENV, "received_ms", MSG_K_U64, 0, U64MAX, 0 },
	{ MSG_FED_ENV, "payload", MSG_K_BYTES32, 0, 65536, 0 },
	{ MSG_FED_REQ, "requester", MSG_K_ADDR, 0, 255, 0 },
	{ MSG_FED_REQ, "request", MSG_K_BYTES16, 0, 4096, 0 },
	{ MSG_FED_RESP, "response", MSG_K_BYTES32, 0, 71616, 0 },
	{ MSG_FED_RENV, "id", MSG_K_ID16, 0, 0, 0 },
	{ MSG_FED_RENV, "from", MSG_K_ADDR, 0, 255, 0 },
	{ MSG_FED_RENV, "from_device", MSG_K_U32, 1, 0xFFFFFFFF, 0 },
	{ MSG_FED_RENV, "to", MSG_K_ADDR, 0, 255, 0 },
	{ MSG_FED_RENV, "to_device", MSG_K_U32, 1, 0xFFFFFFFF, 0 },
	{ MSG_FED_RENV, "class", MSG_K_U8, 1, 3, 0 },
	{ MSG_FED_RENV, "timestamp_ms", MSG_K_U64, 0, U64MAX, 0 },
	{ MSG_FED_RENV, "received_ms", MSG_K_U64, 0, U64MAX, 0 },
	{ MSG_FED_RENV, "payload", MSG_K_BYTES32, 0, 65536, 0 },
	{ MSG_FED_RENV, "sig", MSG_K_SIG64, 0, 0, 0 },
	{ MSG_FED_PRESENCE, "to", MSG_K_ADDR, 0, 255, 0 },
	{ MSG_FED_PRESENCE, "user", MSG_K_ADDR, 0, 255, 0 },
	{ MSG_FED_PRESENCE, "state", MSG_K_U8, 0, 2, 0 },
	{ MSG_FED_PRESENCE, "last_seen_ms", MSG_K_U64, 0, U64MAX, 0 },
};

/* Buffers for the generated extreme samples. */
static uint8_t big_bytes[MSG_MAX + 1];
/* Texts are carved one after another from an arena (reset per sample),
 * so two fields of one message never share bytes. */
static char text_arena[8192];
static size_t text_used;
static char big_addr[IDENT_ADDR_MAX + 2];
static uint8_t rec_buf[(MSG_PREKEYS_MAX + 1) * MSG_BUNDLE_REC_LEN];
static uint8_t list_buf[(MSG_CONTACTS_MAX + 1) * 4];
static uint8_t enc[MSG_MAX + 16];
static uint8_t enc2[MSG_MAX + 16];

/* A 255-byte address when n is 255, 256 bytes (one too many) when 256. */
static struct msg_str
addr_of_len(size_t n)
{
	size_t i;

	memset(big_addr, 'x', sizeof(big_addr));
	for (i = 0; i < 64; i++)
		big_addr[i] = 'a' + (char)(i % 26);
	big_addr[64] = '@';
	/* Domain: labels of 62 bytes, so any length stays label-valid. */
	for (i = 65 + 62; i < n - 1; i += 63)
		big_addr[i] = '.';
	return (struct msg_str){ big_addr, n };
}

/* A valid domain of n bytes (n <= 254 so a one-past-cap one fits):
 * labels of 62 letters joined by dots, never ending in a dot. */
static struct msg_str
domain_of_len(size_t n)
{
	static char d[300];
	size_t i;

	TT_ASSERT(n >= 1 && n < sizeof(d));
	for (i = 0; i < n; i++)
		d[i] = (i % 63 == 62 && i != n - 1) ? '.' : 'd';
	return (struct msg_str){ d, n };
}

/* Text of n bytes, valid UTF-8, ending in a 3-byte character when there
 * is room so multi-byte sequences sit right at the cap. */
static struct msg_str
text_of_len(size_t n)
{
	char *t = text_arena + text_used;

	TT_ASSERT(n <= sizeof(text_arena) - text_used);
	text_used += n;
	memset(t, 'x', n);
	if (n >= 3)
		memcpy(t + n - 3, "\xe2\x82\xac", 3);
	return (struct msg_str){ t, n };
}

/*
 * extreme: fills m (of type) with every field at its minimum (hi = 0) or
 * maximum (hi = 1), reading the limits from the table. A field index
 * `over` (or -1) is instead set one past its limit: count or length
 * max + 1, or an integer max + 1 (hi) or min - 1 (!hi).
 */
static void
extreme(uint8_t type, struct msg *m, int hi, int over)
{
	const struct msg_desc *d = msg_desc_get(type);
	struct buf_writer w;
	size_t i, k, n;

	TT_ASSERT(d != NULL);
	memset(m, 0, sizeof(*m));
	text_used = 0;
	m->type = type;
	m->req = hi ? UINT32_MAX : 0;
	for (i = 0; i < d->nfields; i++) {
		const struct msg_field *f = &d->fields[i];
		uint8_t *dst = (uint8_t *)&m->u + f->off;
		uint64_t v = hi ? f->max : f->min;
		int bump = (int)i == over;

		if (bump)
			v = hi ? v + 1 : v - 1;
		n = (size_t)f->max + (bump ? 1 : 0);
		switch (f->kind) {
		case MSG_K_U8:
			*(uint8_t *)dst = (uint8_t)v;
			break;
		case MSG_K_U16:
			*(uint16_t *)dst = (uint16_t)v;
			break;
		case MSG_K_U32:
			*(uint32_t *)dst = (uint32_t)v;
			break;
		case MSG_K_U64:
			*(uint64_t *)dst = v;
			break;
		case MSG_K_ID16:
			memset(dst, hi ? 0xff : 0, MSG_ID_LEN);
			break;
		case MSG_K_KEY32:
			memset(dst, hi ? 0xff : 0, MSG_KEY_LEN);
			break;
		case MSG_K_SIG64:
			memset(dst, hi ? 0xff : 0, MSG_SIG_LEN);
			break;
		case MSG_K_ADDR:
			*(struct msg_str *)dst = hi || bump ?
			    addr_of_len(bump ? 256 : 255) : S("a@b");
			break;
		case MSG_K_STR8:
		case MSG_K_STR16:
			*(struct msg_str *)dst = hi || bump ?
			    text_of_len(n) : S("");
			break;
		case MSG_K_DOMAIN:
			*(struct msg_str *)dst = hi || bump ?
			    domain_of_len(n) : S("b");
			break;
		case MSG_K_BYTES16:
		case MSG_K_BYTES32:
			memset(big_bytes, 0xff, sizeof(big_bytes));
			*(struct msg_bytes *)dst = hi || bump ?
			    (struct msg_bytes){ big_bytes, n } :
			    (struct msg_bytes){ NULL, 0 };
			break;
		case MSG_K_RECORDS: {
			struct msg_list *l = (struct msg_list *)dst;
			memset(l, 0, sizeof(*l));
			if (!hi && !bump)
				break;
			buf_writer_init(&w, rec_buf, sizeof(rec_buf));
			for (k = 0; k < n; k++) {
				/* Records are opaque to the codec: a
				 * numbered record of the field's size. */
				uint8_t rec[MSG_BUNDLE_REC_LEN];
				TT_ASSERT(f->reclen <= sizeof(rec));
				memset(rec, 0x5a, sizeof(rec));
				buf_store_be32(rec, (uint32_t)k + 1);
				TT_OK(msg_record_add(l, &w, rec, f->reclen));
			}
			break;
		}
		case MSG_K_ADDRLIST: {
			struct msg_list *l = (struct msg_list *)dst;
			memset(l, 0, sizeof(*l));
			if (!hi && !bump)
				break;
			/* The count is the cap here, so the shortest
			 * addresses. */
			buf_writer_init(&w, list_buf, sizeof(list_buf));
			for (k = 0; k < n; k++)
				TT_OK(msg_addrlist_add(l, &w, "a@b", 3));
			break;
		}
		default:
			tt_fail(__FILE__, __LINE__, "kind %d not in v1",
			    f->kind);
		}
	}
}

/* Encodes m, checks msg_encoded_size agrees, returns the length. */
static size_t
encode_ok(const struct msg *m, uint8_t *out, size_t cap)
{
	size_t len = 0;

	TT_OK(msg_encode(m, out, cap, &len));
	TT_EQ(msg_encoded_size(m), len);
	TT_ASSERT(len >= MSG_HDR_LEN && len <= MSG_MAX);
	return len;
}

/* Decodes in and checks that re-encoding gives the same bytes. */
static void
decode_canonical(const uint8_t *in, size_t len)
{
	struct msg m;
	size_t len2;

	TT_OK(msg_decode(in, len, &m));
	len2 = encode_ok(&m, enc2, sizeof(enc2));
	TT_EQ(len2, len);
	TT_MEMEQ(enc2, in, len);
}

/* Every proper prefix of in must fail with TERN_ETRUNC. */
static void
check_prefixes(const uint8_t *in, size_t len)
{
	struct msg m;
	size_t k;

	for (k = 0; k < len; k++) {
		int rc = msg_decode(in, k, &m);
		if (rc != TERN_ETRUNC)
			tt_fail(__FILE__, __LINE__,
			    "type 0x%02x prefix %zu/%zu: %s",
			    len > 1 ? in[1] : 0, k, len, tern_errname(rc));
	}
}

TT_CASE(msg__catalogue__types_known)
{
	unsigned t;
	size_t i, n = 0;

	for (t = 0; t < 256; t++) {
		int in_cat = 0;
		for (i = 0; i < sizeof(catalogue); i++)
			in_cat |= catalogue[i] == t;
		TT_EQ(msg_type_known((uint8_t)t), in_cat);
		TT_EQ(msg_desc_get((uint8_t)t) != NULL, in_cat);
		/* Every type has a golden encoding. */
		TT_EQ(golden_for((uint8_t)t) != NULL, in_cat);
		n += (size_t)in_cat;
	}
	TT_EQ(n, 41);
	TT_EQ(NGOLDEN, 41);
	TT_ASSERT(strcmp(msg_type_name(MSG_SEND), "SEND") == 0);
	TT_ASSERT(strcmp(msg_type_name(MSG_PRESENCE_UNSUB),
	    "PRESENCE_UNSUB") == 0);
	TT_ASSERT(strcmp(msg_type_name(0x00), "UNKNOWN") == 0);
	TT_ASSERT(strcmp(msg_type_name(0x40), "KEYS_PUT") == 0);
	TT_ASSERT(strcmp(msg_type_name(0x45), "UNKNOWN") == 0);
	TT_ASSERT(strcmp(msg_type_name(0xff), "UNKNOWN") == 0);
}

TT_CASE(msg__catalogue__fields_pinned)
{
	size_t i = 0, j, groups = 0;

	while (i < sizeof(pins) / sizeof(pins[0])) {
		const struct msg_desc *d = msg_desc_get(pins[i].type);
		TT_ASSERT(d != NULL && d->nfields > 0);
		groups++;
		for (j = 0; j < d->nfields; j++, i++) {
			const struct msg_field *f = &d->fields[j];
			if (i >= sizeof(pins) / sizeof(pins[0]) ||
			    pins[i].type != pins[i - j].type)
				tt_fail(__FILE__, __LINE__,
				    "%s has more fields than pinned", d->name);
			if (strcmp(f->name, pins[i].name) != 0)
				tt_fail(__FILE__, __LINE__, "%s field %zu: %s "
				    "!= %s", d->name, j, f->name, pins[i].name);
			TT_EQ(f->kind, pins[i].kind);
			TT_ASSERT(f->min == pins[i].min);
			TT_ASSERT(f->max == pins[i].max);
			TT_EQ(f->reclen, pins[i].reclen);
		}
		/* The next pin must start another type. */
		if (i < sizeof(pins) / sizeof(pins[0]) &&
		    pins[i].type == pins[i - 1].type)
			tt_fail(__FILE__, __LINE__, "%s has fewer fields "
			    "than pinned", d->name);
	}
	/* Every type but the three without fields is pinned. */
	TT_EQ(groups, 38);
	TT_EQ(msg_desc_get(MSG_OK)->nfields, 0);
	TT_EQ(msg_desc_get(MSG_CONTACT_LIST)->nfields, 0);
	TT_EQ(msg_desc_get(MSG_KEYS_STATUS)->nfields, 0);
}

TT_CASE(msg__encode__golden_every_type)
{
	uint8_t want[1024];
	struct msg m;
	size_t i, len, wlen;

	for (i = 0; i < NGOLDEN; i++) {
		sample(goldens[i].type, &m);
		wlen = hx(goldens[i].hex, want, sizeof(want));
		len = encode_ok(&m, enc, sizeof(enc));
		if (len != wlen || memcmp(enc, want, len) != 0)
			tt_fail(__FILE__, __LINE__, "%s: encoding differs "
			    "from golden (%zu vs %zu bytes)",
			    msg_type_name(goldens[i].type), len, wlen);
	}
}

TT_CASE(msg__decode__golden_every_type)
{
	uint8_t in[1024];
	struct msg m, want;
	size_t i, len;

	for (i = 0; i < NGOLDEN; i++) {
		len = hx(goldens[i].hex, in, sizeof(in));
		TT_OK(msg_decode(in, len, &m));
		sample(goldens[i].type, &want);
		TT_EQ(m.type, want.type);
		TT_EQ(m.req, want.req);
		decode_canonical(in, len);
	}
}

TT_CASE(msg__decode__golden_send_fields)
{
	uint8_t in[256];
	struct msg m;
	size_t len = hx(golden_for(MSG_SEND)->hex, in, sizeof(in));

	TT_EQ(len, 54);
	TT_OK(msg_decode(in, len, &m));
	TT_EQ(m.type, MSG_SEND);
	TT_EQ(m.req, REQ);
	TT_MEMEQ(m.u.send.id, id_a, MSG_ID_LEN);
	TT_EQ(m.u.send.to.len, 10);
	TT_MEMEQ(m.u.send.to.p, "bob@b.test", 10);
	TT_EQ(m.u.send.to_device, 2);
	TT_EQ(m.u.send.class, MSG_CLASS_MESSAGE);
	TT_ASSERT(m.u.send.timestamp_ms == TS);
	TT_EQ(m.u.send.payload.len, 4);
	TT_MEMEQ(m.u.send.payload.p, "\xde\xad\xbe\xef", 4);
	/* Zero-copy: the fields point into the input. */
	TT_ASSERT((const uint8_t *)m.u.send.to.p == in + 23);
	TT_ASSERT(m.u.send.payload.p == in + 50);
}

TT_CASE(msg__decode__golden_error_fields)
{
	uint8_t in[256];
	struct msg m;
	size_t len = hx(golden_for(MSG_ERROR)->hex, in, sizeof(in));

	TT_EQ(len, 22);
	TT_OK(msg_decode(in, len, &m));
	TT_EQ(m.type, MSG_ERROR);
	TT_EQ(m.req, REQ);
	TT_EQ(m.u.error.code, -TERN_ENOUSER);
	TT_EQ(m.u.error.detail.len, 12);
	TT_MEMEQ(m.u.error.detail.p, "no such user", 12);
	TT_ASSERT((const uint8_t *)m.u.error.detail.p == in + 10);
}

TT_CASE(msg__round_trip__extremes_every_type)
{
	struct msg m;
	size_t i, len;
	int hi;

	for (i = 0; i < sizeof(catalogue); i++) {
		for (hi = 0; hi <= 1; hi++) {
			extreme(catalogue[i], &m, hi, -1);
			len = encode_ok(&m, enc, sizeof(enc));
			decode_canonical(enc, len);
		}
	}
}

TT_CASE(msg__round_trip__max_sizes)
{
	struct msg m, d;
	size_t len;

	/* SEND with a full 64 KiB payload and a 255-byte address. */
	extreme(MSG_SEND, &m, 1, -1);
	len = encode_ok(&m, enc, sizeof(enc));
	TT_EQ(len, MSG_HDR_LEN + 16 + 1 + 255 + 4 + 1 + 8 + 4 + 65536);
	TT_OK(msg_decode(enc, len, &d));
	TT_EQ(d.u.send.payload.len, MSG_PAYLOAD_MAX);
	TT_EQ(d.u.send.to.len, IDENT_ADDR_MAX);
	TT_EQ(d.u.send.class, MSG_CLASS_EPHEMERAL);
	TT_ASSERT(d.u.send.timestamp_ms == UINT64_MAX);
	TT_ASSERT(d.req == UINT32_MAX);

	/* The largest v1 message, and it fits MSG_MAX with headroom. */
	extreme(MSG_DELIVER, &m, 1, -1);
	len = encode_ok(&m, enc, sizeof(enc));
	TT_EQ(len, MSG_HDR_LEN + 16 + 256 + 4 + 1 + 8 + 8 + 4 + 65536);
	TT_ASSERT(len < MSG_MAX);

	extreme(MSG_CONTACTS, &m, 1, -1);
	len = encode_ok(&m, enc, sizeof(enc));
	TT_OK(msg_decode(enc, len, &d));
	TT_EQ(d.u.contacts.users.count, MSG_CONTACTS_MAX);

	extreme(MSG_DEVICES, &m, 1, -1);
	len = encode_ok(&m, enc, sizeof(enc));
	TT_OK(msg_decode(enc, len, &d));
	TT_EQ(d.u.devices.device_ids.count, MSG_DEVICES_MAX);
	TT_EQ(buf_load_be32(msg_record(&d.u.devices.device_ids, 4, 63)), 64);
	TT_ASSERT(msg_record(&d.u.devices.device_ids, 4, 64) == NULL);
}

/* Whether field f can be pushed past its limit in direction hi. */
static int
can_exceed(const struct msg_field *f, int hi)
{
	switch (f->kind) {
	case MSG_K_U8:
		return hi ? f->max < UINT8_MAX : f->min > 0;
	case MSG_K_U16:
		return hi ? f->max < UINT16_MAX : f->min > 0;
	case MSG_K_U32:
		return hi ? f->max < UINT32_MAX : f->min > 0;
	case MSG_K_U64:
		return hi ? f->max < UINT64_MAX : f->min > 0;
	case MSG_K_ADDR:
	case MSG_K_DOMAIN:
	case MSG_K_STR8:
	case MSG_K_STR16:
	case MSG_K_BYTES16:
	case MSG_K_BYTES32:
	case MSG_K_RECORDS:
	case MSG_K_ADDRLIST:
		return hi;
	default:
		return 0;
	}
}

/* The code a field one past its limit earns. */
static int
exceed_code(const struct msg_field *f)
{
	switch (f->kind) {
	case MSG_K_U8:
	case MSG_K_U16:
	case MSG_K_U32:
	case MSG_K_U64:
	case MSG_K_ADDR:
	case MSG_K_DOMAIN:
		return TERN_EFIELD;
	default:
		return TERN_ETOOBIG;
	}
}

TT_CASE(msg__encode__refuses_every_limit_plus_one)
{
	struct msg m;
	size_t i, j, len;
	int hi, n = 0;

	for (i = 0; i < sizeof(catalogue); i++) {
		const struct msg_desc *d = msg_desc_get(catalogue[i]);
		for (j = 0; j < d->nfields; j++) {
			for (hi = 0; hi <= 1; hi++) {
				const struct msg_field *f = &d->fields[j];
				if (!can_exceed(f, hi))
					continue;
				extreme(catalogue[i], &m, hi, (int)j);
				len = 99;
				TT_ERR(msg_encode(&m, enc, sizeof(enc), &len),
				    exceed_code(f));
				TT_EQ(len, 0);
				TT_EQ(msg_encoded_size(&m), 0);
				n++;
			}
		}
	}
	/* 30 integer bounds, 18 caps, 3 domains and 23 addresses: the
	 * count pins that the walk reached every limit. */
	TT_EQ(n, 74);
}

/*
 * Encodes m with field j's limit widened by one in a copy of the table
 * (so the encoder writes what the real table forbids); returns the length.
 */
static size_t
encode_widened(const struct msg *m, size_t j, int hi, uint8_t *out,
    size_t cap)
{
	const struct msg_desc *d = msg_desc_get(m->type);
	struct msg_field fields[16];
	struct msg_desc wide;
	struct buf_writer w;

	TT_ASSERT(d->nfields <= 16);
	memcpy(fields, d->fields, d->nfields * sizeof(fields[0]));
	if (hi)
		fields[j].max++;
	else
		fields[j].min--;
	wide = *d;
	wide.fields = fields;
	buf_writer_init(&w, out, cap);
	buf_put_u8(&w, MSG_VERSION);
	buf_put_u8(&w, m->type);
	buf_put_u32(&w, m->req);
	TT_OK(msg_body_encode(&wide, &m->u, &w));
	return w.len;
}

TT_CASE(msg__decode__refuses_every_limit_plus_one)
{
	struct msg m, d;
	size_t i, j, len, k, first, body;
	int hi, rc, n = 0;

	for (i = 0; i < sizeof(catalogue); i++) {
		const struct msg_desc *desc = msg_desc_get(catalogue[i]);
		for (j = 0; j < desc->nfields; j++) {
			const struct msg_field *f = &desc->fields[j];
			for (hi = 0; hi <= 1; hi++) {
				/* An address over 255 bytes cannot be
				 * written behind a u8 at all, and a domain
				 * one byte over its cap fails the name
				 * check before the encoder writes it. */
				if (!can_exceed(f, hi) || f->kind == MSG_K_ADDR ||
				    f->kind == MSG_K_DOMAIN)
					continue;
				extreme(catalogue[i], &m, hi, (int)j);
				len = encode_widened(&m, j, hi, enc,
				    sizeof(enc));
				TT_ERR(msg_decode(enc, len, &d),
				    exceed_code(f));
				n++;
				if (exceed_code(f) != TERN_ETOOBIG)
					continue;
				/*
				 * The cap is checked before the bytes are
				 * looked for: every prefix fails with
				 * ETRUNC until the length prefix is whole,
				 * then with ETOOBIG, long before the body
				 * it declares has arrived.
				 */
				first = 0;
				for (k = 0; k <= len; k++) {
					rc = msg_decode(enc, k, &d);
					if (first == 0 && rc == TERN_ETOOBIG)
						first = k;
					TT_ERR(rc, first ? TERN_ETOOBIG :
					    TERN_ETRUNC);
				}
				body = (size_t)f->max + 1;
				if (f->kind == MSG_K_RECORDS)
					body *= f->reclen;
				else if (f->kind == MSG_K_ADDRLIST)
					body *= 4;
				TT_ASSERT(first > 0 && first + body <= len);
			}
		}
	}
	/* 30 integer bounds and 18 caps: the count pins that the walk
	 * reached every limit. */
	TT_EQ(n, 48);
}

TT_CASE(msg__decode__truncated_every_prefix)
{
	uint8_t in[1024];
	struct msg m;
	size_t i, len;
	int hi;

	for (i = 0; i < NGOLDEN; i++) {
		len = hx(goldens[i].hex, in, sizeof(in));
		check_prefixes(in, len);
	}
	for (i = 0; i < sizeof(catalogue); i++) {
		for (hi = 0; hi <= 1; hi++) {
			extreme(catalogue[i], &m, hi, -1);
			len = encode_ok(&m, enc, sizeof(enc));
			check_prefixes(enc, len);
		}
	}
}

TT_CASE(msg__decode__trailing_byte)
{
	uint8_t in[1024];
	struct msg m;
	size_t i, len;

	for (i = 0; i < NGOLDEN; i++) {
		len = hx(goldens[i].hex, in, sizeof(in));
		in[len] = 0x00;
		TT_ERR(msg_decode(in, len + 1, &m), TERN_ETRAILING);
		memset(in + len, 0xff, 7);
		TT_ERR(msg_decode(in, len + 7, &m), TERN_ETRAILING);
	}
}

TT_CASE(msg__decode__bad_version)
{
	uint8_t in[64];
	struct msg m;
	size_t len = hx(golden_for(MSG_PING)->hex, in, sizeof(in));
	static const uint8_t bad[] = { 0x00, 0x02, 0x10, 0xff };
	size_t i;

	for (i = 0; i < sizeof(bad); i++) {
		in[0] = bad[i];
		TT_ERR(msg_decode(in, len, &m), TERN_EVERSION);
		/* The version is read first, before anything else can be
		 * found missing. */
		TT_ERR(msg_decode(in, 1, &m), TERN_EVERSION);
	}
	TT_ERR(msg_decode(in, 0, &m), TERN_ETRUNC);
	TT_ERR(msg_decode(NULL, 0, &m), TERN_ETRUNC);
}

TT_CASE(msg__decode__unknown_type)
{
	uint8_t in[8] = { 0x01, 0x00, 0x00, 0x00, 0x00, 0x07 };
	struct msg m;
	unsigned t;

	for (t = 0; t < 256; t++) {
		in[1] = (uint8_t)t;
		if (!msg_type_known((uint8_t)t)) {
			TT_ERR(msg_decode(in, 6, &m), TERN_ETYPE);
			/* The type is judged before req is read. */
			TT_ERR(msg_decode(in, 2, &m), TERN_ETYPE);
		} else if (t == MSG_OK || t == MSG_CONTACT_LIST ||
		    t == MSG_KEYS_STATUS) {
			TT_OK(msg_decode(in, 6, &m));
			TT_EQ(m.type, t);
			TT_EQ(m.req, 7);
		} else
			TT_ERR(msg_decode(in, 6, &m), TERN_ETRUNC);
	}
}

TT_CASE(msg__decode__over_msg_max)
{
	static uint8_t big[MSG_MAX + 1];
	struct msg m;

	memset(big, 0, sizeof(big));
	big[0] = MSG_VERSION;
	big[1] = MSG_OK;
	TT_ERR(msg_decode(big, sizeof(big), &m), TERN_ETOOBIG);
	TT_ERR(msg_decode(big, MSG_MAX, &m), TERN_ETRAILING);
}

/* A SEND with its payload length field replaced and body 4 bytes. */
static size_t
send_with_len(uint8_t *in, size_t cap, uint32_t declared)
{
	size_t len = hx(golden_for(MSG_SEND)->hex, in, cap);

	/* The payload length sits 8 bytes from the end: 4 of length, 4 of
	 * body. */
	buf_store_be32(in + len - 8, declared);
	return len;
}

TT_CASE(msg__decode__bytes32_cap_before_length)
{
	uint8_t in[256];
	struct msg m;
	size_t len;

	/* 65537 is one over the cap; only 4 bytes follow. The cap wins:
	 * the claim alone is refused, whatever arrives after it. */
	len = send_with_len(in, sizeof(in), MSG_PAYLOAD_MAX + 1);
	TT_ERR(msg_decode(in, len, &m), TERN_ETOOBIG);
	TT_ERR(msg_decode(in, len - 4, &m), TERN_ETOOBIG);
	len = send_with_len(in, sizeof(in), UINT32_MAX);
	TT_ERR(msg_decode(in, len, &m), TERN_ETOOBIG);
	/* At the cap itself the length is fine and the body is short. */
	len = send_with_len(in, sizeof(in), MSG_PAYLOAD_MAX);
	TT_ERR(msg_decode(in, len, &m), TERN_ETRUNC);
	len = send_with_len(in, sizeof(in), 5);
	TT_ERR(msg_decode(in, len, &m), TERN_ETRUNC);
	len = send_with_len(in, sizeof(in), 3);
	TT_ERR(msg_decode(in, len, &m), TERN_ETRAILING);
	len = send_with_len(in, sizeof(in), 4);
	TT_OK(msg_decode(in, len, &m));
}

TT_CASE(msg__decode__str8_cap_before_length)
{
	uint8_t in[256];
	struct msg m;
	size_t len = hx("01 10 01020304" H_ALICE "41", in, sizeof(in));

	/* invite declares 65 bytes (cap 64) and nothing follows. */
	TT_ERR(msg_decode(in, len, &m), TERN_ETOOBIG);
	len = hx("01 10 01020304" H_ALICE "40", in, sizeof(in));
	TT_ERR(msg_decode(in, len, &m), TERN_ETRUNC);
}

TT_CASE(msg__decode__list_count_cap)
{
	uint8_t in[256];
	struct msg m;
	size_t len;

	len = hx("01 37 01020304 0101", in, sizeof(in));
	TT_ERR(msg_decode(in, len, &m), TERN_ETOOBIG);
	len = hx("01 37 01020304 0100", in, sizeof(in));
	TT_ERR(msg_decode(in, len, &m), TERN_ETRUNC);
	len = hx("01 37 01020304 ffff 03 614062", in, sizeof(in));
	TT_ERR(msg_decode(in, len, &m), TERN_ETOOBIG);
	len = hx("01 17 01020304" H_BOB "0041 00000001", in, sizeof(in));
	TT_ERR(msg_decode(in, len, &m), TERN_ETOOBIG);
	len = hx("01 17 01020304" H_BOB "0040 00000001", in, sizeof(in));
	TT_ERR(msg_decode(in, len, &m), TERN_ETRUNC);
	len = hx("01 17 01020304" H_BOB "0000", in, sizeof(in));
	TT_OK(msg_decode(in, len, &m));
	TT_EQ(m.u.devices.device_ids.count, 0);
	TT_EQ(m.u.devices.device_ids.len, 0);
}

TT_CASE(msg__decode__bad_utf8)
{
	uint8_t in[256];
	struct msg m;
	size_t len;

	/* REGISTER device_name: overlong NUL. */
	len = hx("01 10 01020304" H_ALICE "00 02 c080", in, sizeof(in));
	TT_ERR(msg_decode(in, len, &m), TERN_EUTF8);
	/* Invite: a plain NUL. */
	len = hx("01 10 01020304" H_ALICE "01 00 00", in, sizeof(in));
	TT_ERR(msg_decode(in, len, &m), TERN_EUTF8);
	/* ERROR detail: NUL inside. */
	len = hx("01 01 01020304 0014 0003 610062", in, sizeof(in));
	TT_ERR(msg_decode(in, len, &m), TERN_EUTF8);
	/* PROFILE_SET status: a surrogate. */
	len = hx("01 30 01020304 00 0003 eda080", in, sizeof(in));
	TT_ERR(msg_decode(in, len, &m), TERN_EUTF8);
	/* PROFILE name: above U+10FFFF. */
	len = hx("01 32 01020304" H_BOB "04 f4908080 0000", in, sizeof(in));
	TT_ERR(msg_decode(in, len, &m), TERN_EUTF8);
	/* A sequence cut by the field's end, though bytes follow. */
	len = hx("01 30 01020304 01 c3 0001 a9", in, sizeof(in));
	TT_ERR(msg_decode(in, len, &m), TERN_EUTF8);
}

TT_CASE(msg__decode__bad_class)
{
	uint8_t in[256];
	struct msg m;
	size_t len, cls;
	static const uint8_t bad[] = { 0, 4, 0xff };
	size_t i;

	for (i = 0; i < sizeof(bad); i++) {
		/* SEND: class sits after hdr, id, to, to_device. */
		len = hx(golden_for(MSG_SEND)->hex, in, sizeof(in));
		cls = MSG_HDR_LEN + 16 + 11 + 4;
		TT_EQ(in[cls], MSG_CLASS_MESSAGE);
		in[cls] = bad[i];
		TT_ERR(msg_decode(in, len, &m), TERN_EFIELD);
		len = hx(golden_for(MSG_DELIVER)->hex, in, sizeof(in));
		cls = MSG_HDR_LEN + 16 + 13 + 4;
		TT_EQ(in[cls], MSG_CLASS_MESSAGE);
		in[cls] = bad[i];
		TT_ERR(msg_decode(in, len, &m), TERN_EFIELD);
	}
	for (i = 1; i <= 3; i++) {
		len = hx(golden_for(MSG_SEND)->hex, in, sizeof(in));
		in[MSG_HDR_LEN + 16 + 11 + 4] = (uint8_t)i;
		TT_OK(msg_decode(in, len, &m));
		TT_EQ(m.u.send.class, i);
	}
}

TT_CASE(msg__decode__bad_address)
{
	uint8_t in[256];
	struct msg m;
	size_t len;

	len = hx("01 34 01020304 0a 426f6240622e74657374", in, sizeof(in));
	TT_ERR(msg_decode(in, len, &m), TERN_EFIELD);       /* "Bob@" */
	len = hx("01 34 01020304 00", in, sizeof(in));
	TT_ERR(msg_decode(in, len, &m), TERN_EFIELD);       /* empty */
	len = hx("01 34 01020304 04 626f6240", in, sizeof(in));
	TT_ERR(msg_decode(in, len, &m), TERN_EFIELD);       /* "bob@" */
	len = hx("01 34 01020304 05 6240622e2e", in, sizeof(in));
	TT_ERR(msg_decode(in, len, &m), TERN_EFIELD);       /* "b@b.." */
	len = hx("01 34 01020304 05 6200406263", in, sizeof(in));
	TT_ERR(msg_decode(in, len, &m), TERN_EFIELD);       /* NUL */
	len = hx("01 34 01020304 05 6240624062", in, sizeof(in));
	TT_ERR(msg_decode(in, len, &m), TERN_EFIELD);       /* two @ */
	/* In SEND, and in the second item of a list. */
	len = hx(golden_for(MSG_SEND)->hex, in, sizeof(in));
	in[MSG_HDR_LEN + 16 + 1] = 'B';
	TT_ERR(msg_decode(in, len, &m), TERN_EFIELD);
	len = hx("01 37 01020304 0002" H_ALICE "0a 626f6240622e7465737a",
	    in, sizeof(in));
	TT_OK(msg_decode(in, len, &m));
	len = hx("01 37 01020304 0002" H_ALICE "0a 626f6240622e74657354",
	    in, sizeof(in));
	TT_ERR(msg_decode(in, len, &m), TERN_EFIELD);
}

TT_CASE(msg__decode__device_id_zero)
{
	uint8_t in[256];
	struct msg m;
	size_t len;

	len = hx("01 12 01020304" H_ALICE "00000000", in, sizeof(in));
	TT_ERR(msg_decode(in, len, &m), TERN_EFIELD);
	len = hx("01 11 01020304 00000000", in, sizeof(in));
	TT_ERR(msg_decode(in, len, &m), TERN_EFIELD);
	len = hx("01 18 01020304 00000000", in, sizeof(in));
	TT_ERR(msg_decode(in, len, &m), TERN_EFIELD);
	len = hx(golden_for(MSG_SEND)->hex, in, sizeof(in));
	buf_store_be32(in + MSG_HDR_LEN + 16 + 11, 0);
	TT_ERR(msg_decode(in, len, &m), TERN_EFIELD);
	len = hx("01 12 01020304" H_ALICE "ffffffff", in, sizeof(in));
	TT_OK(msg_decode(in, len, &m));
	TT_ASSERT(m.u.login.device_id == UINT32_MAX);
}

TT_CASE(msg__decode__enum_ranges)
{
	uint8_t in[256];
	struct msg m;
	size_t len;

	len = hx("01 33 01020304 03", in, sizeof(in));
	TT_ERR(msg_decode(in, len, &m), TERN_EFIELD);
	len = hx("01 33 01020304 02", in, sizeof(in));
	TT_OK(msg_decode(in, len, &m));
	len = hx("01 3a 00000000" H_BOB "03" H_TS, in, sizeof(in));
	TT_ERR(msg_decode(in, len, &m), TERN_EFIELD);
	len = hx("01 3a 00000000" H_BOB "00" "0000000000000000", in,
	    sizeof(in));
	TT_OK(msg_decode(in, len, &m));
	len = hx("01 24 00000000" H_IDB "00" H_IDA H_BOB "00000002", in,
	    sizeof(in));
	TT_ERR(msg_decode(in, len, &m), TERN_EFIELD);
	len = hx("01 24 00000000" H_IDB "03" H_IDA H_BOB "00000002", in,
	    sizeof(in));
	TT_ERR(msg_decode(in, len, &m), TERN_EFIELD);
	len = hx("01 24 00000000" H_IDB "02" H_IDA H_BOB "00000002", in,
	    sizeof(in));
	TT_OK(msg_decode(in, len, &m));
	len = hx("01 01 01020304 0000 0000", in, sizeof(in));
	TT_ERR(msg_decode(in, len, &m), TERN_EFIELD);
	/* Codes are appended over time: a newer peer's code is fine. */
	len = hx("01 01 01020304 ffff 0000", in, sizeof(in));
	TT_OK(msg_decode(in, len, &m));
	TT_EQ(m.u.error.code, 0xffff);
}

TT_CASE(msg__decode__failure_zeroes_out)
{
	uint8_t in[256];
	struct msg m;
	size_t len = hx(golden_for(MSG_SEND)->hex, in, sizeof(in));

	/* The last byte is cut: every field but the payload decoded
	 * first. Nothing half-filled may be left. */
	memset(&m, 0x5a, sizeof(m));
	TT_ERR(msg_decode(in, len - 1, &m), TERN_ETRUNC);
	TT_EQ(m.type, 0);
	TT_EQ(m.req, 0);
	TT_ASSERT(m.u.send.to.p == NULL);
	TT_EQ(m.u.send.to_device, 0);
	TT_EQ(m.u.send.class, 0);
}

TT_CASE(msg__encode__refuses_invalid)
{
	struct msg m;
	size_t len;
	char inv[MSG_INVITE_MAX + 1];

	sample(MSG_SEND, &m);
	m.u.send.class = 0;
	TT_ERR(msg_encode(&m, enc, sizeof(enc), &len), TERN_EFIELD);
	m.u.send.class = 4;
	TT_ERR(msg_encode(&m, enc, sizeof(enc), &len), TERN_EFIELD);
	TT_EQ(msg_encoded_size(&m), 0);

	sample(MSG_SEND, &m);
	m.u.send.to = S("Bob@b.test");
	TT_ERR(msg_encode(&m, enc, sizeof(enc), &len), TERN_EFIELD);
	m.u.send.to = S("bob");
	TT_ERR(msg_encode(&m, enc, sizeof(enc), &len), TERN_EFIELD);
	m.u.send.to = S("");
	TT_ERR(msg_encode(&m, enc, sizeof(enc), &len), TERN_EFIELD);

	sample(MSG_SEND, &m);
	m.u.send.to_device = 0;
	TT_ERR(msg_encode(&m, enc, sizeof(enc), &len), TERN_EFIELD);

	sample(MSG_SEND, &m);
	m.u.send.payload = (struct msg_bytes){ big_bytes,
	    MSG_PAYLOAD_MAX + 1 };
	TT_ERR(msg_encode(&m, enc, sizeof(enc), &len), TERN_ETOOBIG);
	m.u.send.payload = (struct msg_bytes){ NULL, 4 };
	TT_ERR(msg_encode(&m, enc, sizeof(enc), &len), TERN_EINVAL);

	sample(MSG_REGISTER, &m);
	memset(inv, 'i', sizeof(inv));
	m.u.reg.invite = (struct msg_str){ inv, sizeof(inv) };
	TT_ERR(msg_encode(&m, enc, sizeof(enc), &len), TERN_ETOOBIG);
	m.u.reg.invite = (struct msg_str){ inv, sizeof(inv) - 1 };
	TT_OK(msg_encode(&m, enc, sizeof(enc), &len));
	m.u.reg.device_name = S("\xc0\x80");
	TT_ERR(msg_encode(&m, enc, sizeof(enc), &len), TERN_EUTF8);
	m.u.reg.device_name = (struct msg_str){ "a\0b", 3 };
	TT_ERR(msg_encode(&m, enc, sizeof(enc), &len), TERN_EUTF8);
	m.u.reg.device_name = (struct msg_str){ NULL, 1 };
	TT_ERR(msg_encode(&m, enc, sizeof(enc), &len), TERN_EINVAL);

	sample(MSG_LOGIN, &m);
	m.u.login.device_id = 0;
	TT_ERR(msg_encode(&m, enc, sizeof(enc), &len), TERN_EFIELD);

	sample(MSG_ERROR, &m);
	m.u.error.code = 0;
	TT_ERR(msg_encode(&m, enc, sizeof(enc), &len), TERN_EFIELD);

	sample(MSG_PRIVACY_SET, &m);
	m.u.privacy_set.last_seen = 3;
	TT_ERR(msg_encode(&m, enc, sizeof(enc), &len), TERN_EFIELD);

	sample(MSG_OK, &m);
	m.type = 0x05;
	TT_ERR(msg_encode(&m, enc, sizeof(enc), &len), TERN_ETYPE);
	TT_EQ(len, 0);
	TT_EQ(msg_encoded_size(&m), 0);
	m.type = 0x45;
	TT_ERR(msg_encode(&m, enc, sizeof(enc), &len), TERN_ETYPE);
}

TT_CASE(msg__encode__refuses_inconsistent_lists)
{
	static const uint8_t two[] = { 3, 'a', '@', 'b', 3, 'c', '@', 'd' };
	static const uint8_t badaddr[] = { 3, 'A', '@', 'b' };
	struct msg m;
	size_t len;

	m = (struct msg){ .type = MSG_CONTACTS };
	m.u.contacts.users = (struct msg_list){ two, sizeof(two), 2 };
	TT_OK(msg_encode(&m, enc, sizeof(enc), &len));
	m.u.contacts.users.count = 1;   /* bytes left over */
	TT_ERR(msg_encode(&m, enc, sizeof(enc), &len), TERN_EINVAL);
	m.u.contacts.users.count = 3;   /* items missing */
	TT_ERR(msg_encode(&m, enc, sizeof(enc), &len), TERN_EINVAL);
	m.u.contacts.users = (struct msg_list){ two, sizeof(two) - 1, 2 };
	TT_ERR(msg_encode(&m, enc, sizeof(enc), &len), TERN_EINVAL);
	m.u.contacts.users = (struct msg_list){ NULL, 4, 1 };
	TT_ERR(msg_encode(&m, enc, sizeof(enc), &len), TERN_EINVAL);
	m.u.contacts.users = (struct msg_list){ badaddr, 4, 1 };
	TT_ERR(msg_encode(&m, enc, sizeof(enc), &len), TERN_EFIELD);
	m.u.contacts.users = (struct msg_list){ NULL, 0, 0 };
	TT_OK(msg_encode(&m, enc, sizeof(enc), &len));
	TT_EQ(len, MSG_HDR_LEN + 2);

	sample(MSG_DEVICES, &m);
	m.u.devices.device_ids.len = 7;
	TT_ERR(msg_encode(&m, enc, sizeof(enc), &len), TERN_EINVAL);
	m.u.devices.device_ids.len = 8;
	m.u.devices.device_ids.count = 3;
	TT_ERR(msg_encode(&m, enc, sizeof(enc), &len), TERN_EINVAL);
}

TT_CASE(msg__encode__small_buffer)
{
	struct msg m;
	size_t i, cap, need, len;
	uint8_t out[1024];

	for (i = 0; i < NGOLDEN; i++) {
		sample(goldens[i].type, &m);
		need = msg_encoded_size(&m);
		TT_ASSERT(need > 0);
		for (cap = 0; cap < need; cap++) {
			len = 99;
			TT_ERR(msg_encode(&m, out, cap, &len), TERN_ETOOBIG);
			TT_EQ(len, 0);
		}
		TT_OK(msg_encode(&m, out, need, &len));
		TT_EQ(len, need);
	}
	sample(MSG_OK, &m);
	TT_ERR(msg_encode(&m, NULL, 0, &len), TERN_ETOOBIG);
}

TT_CASE(msg__encode__largest_contacts_fits_msg_max)
{
	static uint8_t lb[300 * 256];
	struct buf_writer w;
	struct msg m;
	size_t i, len;

	/* 300 addresses of 255 bytes: over the count cap. The cap is chosen
	 * so that the largest valid CONTACTS still fits MSG_MAX. */
	m = (struct msg){ .type = MSG_CONTACTS };
	buf_writer_init(&w, lb, sizeof(lb));
	for (i = 0; i < 300; i++) {
		struct msg_str a = addr_of_len(255);
		TT_OK(msg_addrlist_add(&m.u.contacts.users, &w, a.p, a.len));
	}
	TT_ERR(msg_encode(&m, enc, sizeof(enc), &len), TERN_ETOOBIG);
	TT_EQ(msg_encoded_size(&m), 0);
	m.u.contacts.users.count = MSG_CONTACTS_MAX;
	m.u.contacts.users.len = MSG_CONTACTS_MAX * 256;
	TT_OK(msg_encode(&m, enc, sizeof(enc), &len));
	TT_EQ(len, 6 + 2 + MSG_CONTACTS_MAX * 256);
	TT_ASSERT(len <= MSG_MAX);
}

TT_CASE(msg__addrlist__iterate)
{
	uint8_t in[256];
	struct msg m;
	struct msg_str a;
	size_t pos = 0, len = hx(golden_for(MSG_CONTACTS)->hex, in,
	    sizeof(in));

	TT_OK(msg_decode(in, len, &m));
	TT_EQ(m.u.contacts.users.count, 2);
	TT_EQ(m.u.contacts.users.len, 13 + 11);
	TT_ASSERT(m.u.contacts.users.p == in + 8);
	TT_EQ(msg_addrlist_next(&m.u.contacts.users, &pos, &a), 1);
	TT_EQ(a.len, 12);
	TT_MEMEQ(a.p, "alice@a.test", 12);
	TT_EQ(msg_addrlist_next(&m.u.contacts.users, &pos, &a), 1);
	TT_EQ(a.len, 10);
	TT_MEMEQ(a.p, "bob@b.test", 10);
	TT_EQ(msg_addrlist_next(&m.u.contacts.users, &pos, &a), 0);
	TT_EQ(msg_addrlist_next(&m.u.contacts.users, &pos, &a), 0);

	/* A hand-made span that lies about an item's length. */
	m.u.contacts.users.len = 13 + 5;
	pos = 13;
	TT_ERR(msg_addrlist_next(&m.u.contacts.users, &pos, &a),
	    TERN_ETRUNC);
	/* An empty list. */
	m.u.contacts.users = (struct msg_list){ NULL, 0, 0 };
	pos = 0;
	TT_EQ(msg_addrlist_next(&m.u.contacts.users, &pos, &a), 0);
}

TT_CASE(msg__addrlist_add__refuses)
{
	uint8_t b[8];
	struct buf_writer w;
	struct msg_list l = { NULL, 0, 0 };

	buf_writer_init(&w, b, sizeof(b));
	TT_ERR(msg_addrlist_add(&l, &w, "A@b", 3), TERN_EFIELD);
	TT_EQ(w.len, 0);
	TT_OK(msg_addrlist_add(&l, &w, "a@b", 3));
	TT_ERR(msg_addrlist_add(&l, &w, "ab@c", 4), TERN_ETOOBIG);
	TT_EQ(l.count, 1);
	TT_EQ(l.len, 4);
	TT_ASSERT(l.p == b);
}

TT_CASE(msg__record__index)
{
	uint8_t in[256];
	struct msg m;
	size_t len = hx(golden_for(MSG_DEVICES)->hex, in, sizeof(in));
	const struct msg_list *l;

	TT_OK(msg_decode(in, len, &m));
	l = &m.u.devices.device_ids;
	TT_EQ(l->count, 2);
	TT_EQ(l->len, 8);
	TT_EQ(buf_load_be32(msg_record(l, MSG_DEVICE_REC_LEN, 0)), 1);
	TT_EQ(buf_load_be32(msg_record(l, MSG_DEVICE_REC_LEN, 1)), 2);
	TT_ASSERT(msg_record(l, MSG_DEVICE_REC_LEN, 2) == NULL);
	TT_ASSERT(msg_record(l, 0, 0) == NULL);
	TT_ASSERT(msg_record(l, 8, 1) == NULL);
}

/* A sub-encoding with the kinds no v1 message uses. */
struct ext {
	struct msg_str domain;   /* DOMAIN */
	uint8_t sig[MSG_SIG_LEN]; /* SIG64 */
	struct msg_bytes blob;   /* BYTES16, cap 8 */
	uint8_t key[MSG_KEY_LEN]; /* KEY32 */
};

static const struct msg_field ext_fields[] = {
	{ "domain", MSG_K_DOMAIN, offsetof(struct ext, domain), 0, 0, 253 },
	{ "sig", MSG_K_SIG64, offsetof(struct ext, sig), 0, 0, 0 },
	{ "blob", MSG_K_BYTES16, offsetof(struct ext, blob), 0, 0, 8 },
	{ "key", MSG_K_KEY32, offsetof(struct ext, key), 0, 0, 0 },
};
static const struct msg_desc ext_desc = { "EXT", ext_fields, 4 };

TT_CASE(msg__body__other_kinds)
{
	uint8_t b[256];
	struct buf_writer w;
	struct buf_reader r;
	struct ext e, d;
	size_t len;

	memset(&e, 0, sizeof(e));
	e.domain = S("chat.example.test");
	memset(e.sig, 0x55, sizeof(e.sig));
	e.blob = BYTES("\x01\x02\x03");
	memset(e.key, 0x77, sizeof(e.key));
	buf_writer_init(&w, b, sizeof(b));
	TT_OK(msg_body_encode(&ext_desc, &e, &w));
	len = w.len;
	TT_EQ(len, 1 + 17 + 64 + 2 + 3 + 32);
	TT_EQ(b[0], 17);
	TT_EQ(b[18], 0x55);
	TT_EQ(b[82], 0x00);
	TT_EQ(b[83], 0x03);
	buf_reader_init(&r, b, len);
	TT_OK(msg_body_decode(&ext_desc, &r, &d));
	TT_EQ(buf_reader_left(&r), 0);
	TT_EQ(d.domain.len, 17);
	TT_MEMEQ(d.domain.p, "chat.example.test", 17);
	TT_MEMEQ(d.sig, e.sig, sizeof(e.sig));
	TT_EQ(d.blob.len, 3);
	TT_MEMEQ(d.blob.p, "\x01\x02\x03", 3);
	TT_MEMEQ(d.key, e.key, sizeof(e.key));

	/* Every prefix is short. */
	for (size_t k = 0; k < len; k++) {
		buf_reader_init(&r, b, k);
		TT_ERR(msg_body_decode(&ext_desc, &r, &d), TERN_ETRUNC);
	}
	/* DOMAIN: shape checked both ways, upper case refused. */
	b[1] = 'C';
	buf_reader_init(&r, b, len);
	TT_ERR(msg_body_decode(&ext_desc, &r, &d), TERN_EFIELD);
	e.domain = S("Chat.example.test");
	buf_writer_init(&w, b, sizeof(b));
	TT_ERR(msg_body_encode(&ext_desc, &e, &w), TERN_EFIELD);
	e.domain = S("a@b");
	TT_ERR(msg_body_encode(&ext_desc, &e, &w), TERN_EFIELD);
	/* BYTES16: cap 8, checked before the length. */
	e.domain = S("x");
	e.blob = BYTES("123456789");
	buf_writer_init(&w, b, sizeof(b));
	TT_ERR(msg_body_encode(&ext_desc, &e, &w), TERN_ETOOBIG);
	e.blob = BYTES("12345678");
	buf_writer_init(&w, b, sizeof(b));
	TT_OK(msg_body_encode(&ext_desc, &e, &w));
	/* "x" is 2 bytes, sig 64: the blob length sits at 66. */
	TT_EQ(b[67], 8);
	b[67] = 9;
	buf_reader_init(&r, b, 68);
	TT_ERR(msg_body_decode(&ext_desc, &r, &d), TERN_ETOOBIG);
}

TT_CASE(msg__peek_header__after_refusal)
{
	uint8_t in[256], type = 9;
	uint32_t req = 9;
	struct msg m;
	size_t len = hx(golden_for(MSG_SEND)->hex, in, sizeof(in));

	/* A bad class: decode refuses, the header still names the request
	 * the ERROR must answer. */
	in[MSG_HDR_LEN + 16 + 11 + 4] = 0;
	TT_ERR(msg_decode(in, len, &m), TERN_EFIELD);
	TT_OK(msg_peek_header(in, len, &type, &req));
	TT_EQ(type, MSG_SEND);
	TT_EQ(req, REQ);
	/* Unknown types are fine here: a newer peer's request gets its
	 * req echoed too. */
	in[1] = 0x7f;
	TT_OK(msg_peek_header(in, MSG_HDR_LEN, &type, &req));
	TT_EQ(type, 0x7f);
	TT_ERR(msg_peek_header(in, MSG_HDR_LEN - 1, &type, &req),
	    TERN_ETRUNC);
	TT_EQ(type, 0);
	TT_EQ(req, 0);
	in[0] = 2;
	TT_ERR(msg_peek_header(in, len, &type, &req), TERN_EVERSION);
	TT_ERR(msg_peek_header(NULL, 0, &type, &req), TERN_ETRUNC);
}
