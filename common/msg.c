/*
 * msg.c: the table-driven message codec (msg.h).
 *
 * msg_descs below is the whole catalogue: one row per type, one entry per
 * field. Everything else is two loops, one per direction, so the encoder and
 * the decoder cannot drift apart on a message's layout, and a rule (a cap,
 * a range) is written once and holds both ways.
 *
 * Written by hand: generic serializers in Debian (protobuf-c, msgpack,
 * CBOR) allocate on decode or permit several encodings of one value; tern
 * wants a fixed layout, zero-copy borrowed fields and one canonical form.
 */
#include "msg.h"

#include <stdbool.h>
#include <string.h>

#include "ident.h"

/*
 * Table-row helpers. MSG_OFF yields the member's offset only if the member
 * has the C type its kind expects (else the _Generic has no matching
 * association and the build fails), so a row cannot point a U32 at a
 * uint64_t or an ID16 at a 32-byte array.
 */
#define MSG_OFF(s, f, T) \
	_Generic(((struct s *)0)->f, T: offsetof(struct s, f))
#define MSG_OFF_ARR(s, f, n) \
	_Generic(&((struct s *)0)->f, uint8_t (*)[n]: offsetof(struct s, f))
#define MSG_FLD(s, f, k, off, rl, lo, hi) \
	{ #f, (k), (uint16_t)(off), (rl), (lo), (hi) }

#define F_U8(s, f, lo, hi) \
	MSG_FLD(s, f, MSG_K_U8, MSG_OFF(s, f, uint8_t), 0, lo, hi)
#define F_U16(s, f, lo, hi) \
	MSG_FLD(s, f, MSG_K_U16, MSG_OFF(s, f, uint16_t), 0, lo, hi)
#define F_U32(s, f, lo, hi) \
	MSG_FLD(s, f, MSG_K_U32, MSG_OFF(s, f, uint32_t), 0, lo, hi)
#define F_U64(s, f) \
	MSG_FLD(s, f, MSG_K_U64, MSG_OFF(s, f, uint64_t), 0, 0, UINT64_MAX)
#define F_ID16(s, f) \
	MSG_FLD(s, f, MSG_K_ID16, MSG_OFF_ARR(s, f, 16), 0, 0, 0)
#define F_KEY32(s, f) \
	MSG_FLD(s, f, MSG_K_KEY32, MSG_OFF_ARR(s, f, 32), 0, 0, 0)
#define F_SIG64(s, f) \
	MSG_FLD(s, f, MSG_K_SIG64, MSG_OFF_ARR(s, f, 64), 0, 0, 0)
#define F_ADDR(s, f) \
	MSG_FLD(s, f, MSG_K_ADDR, MSG_OFF(s, f, struct msg_str), 0, 0, \
	    IDENT_ADDR_MAX)
#define F_DOMAIN(s, f) \
	MSG_FLD(s, f, MSG_K_DOMAIN, MSG_OFF(s, f, struct msg_str), 0, 0, \
	    IDENT_DOMAIN_MAX)
#define F_STR8(s, f, max) \
	MSG_FLD(s, f, MSG_K_STR8, MSG_OFF(s, f, struct msg_str), 0, 0, max)
#define F_STR16(s, f, max) \
	MSG_FLD(s, f, MSG_K_STR16, MSG_OFF(s, f, struct msg_str), 0, 0, max)
#define F_BYTES16(s, f, max) \
	MSG_FLD(s, f, MSG_K_BYTES16, MSG_OFF(s, f, struct msg_bytes), 0, 0, \
	    max)
#define F_BYTES32(s, f, max) \
	MSG_FLD(s, f, MSG_K_BYTES32, MSG_OFF(s, f, struct msg_bytes), 0, 0, \
	    max)
#define F_ADDRLIST(s, f, max) \
	MSG_FLD(s, f, MSG_K_ADDRLIST, MSG_OFF(s, f, struct msg_list), 0, 0, \
	    max)
#define F_RECORDS(s, f, reclen, max) \
	MSG_FLD(s, f, MSG_K_RECORDS, MSG_OFF(s, f, struct msg_list), reclen, \
	    0, max)

/* Device ids start at 1: 0 is never a device, so a zero on the wire is a
 * bug or an attack, not a lookup to attempt. */
#define DEV_MIN 1
#define DEV_MAX UINT32_MAX

static const struct msg_field error_fields[] = {
	F_U16(msg_error, code, 1, UINT16_MAX),
	F_STR16(msg_error, detail, MSG_ERROR_DETAIL_MAX),
};
static const struct msg_field ping_fields[] = {
	F_U64(msg_ping, nonce),
};
static const struct msg_field pong_fields[] = {
	F_U64(msg_pong, nonce),
};
static const struct msg_field register_fields[] = {
	F_ADDR(msg_register, user),
	F_STR8(msg_register, invite, MSG_INVITE_MAX),
	F_STR8(msg_register, device_name, MSG_DEVICE_NAME_MAX),
};
static const struct msg_field registered_fields[] = {
	F_U32(msg_registered, device_id, DEV_MIN, DEV_MAX),
};
static const struct msg_field login_fields[] = {
	F_ADDR(msg_login, user),
	F_U32(msg_login, device_id, DEV_MIN, DEV_MAX),
};
static const struct msg_field login_ok_fields[] = {
	F_U64(msg_login_ok, server_time_ms),
	F_U32(msg_login_ok, queued, 0, UINT32_MAX),
};
static const struct msg_field device_add_fields[] = {
	F_KEY32(msg_device_add, new_device_key),
	F_STR8(msg_device_add, device_name, MSG_DEVICE_NAME_MAX),
};
static const struct msg_field device_added_fields[] = {
	F_U32(msg_device_added, device_id, DEV_MIN, DEV_MAX),
};
static const struct msg_field device_list_fields[] = {
	F_ADDR(msg_device_list, user),
};
static const struct msg_field devices_fields[] = {
	F_ADDR(msg_devices, user),
	F_RECORDS(msg_devices, device_ids, MSG_DEVICE_REC_LEN,
	    MSG_DEVICES_MAX),
};
static const struct msg_field device_remove_fields[] = {
	F_U32(msg_device_remove, device_id, DEV_MIN, DEV_MAX),
};
static const struct msg_field send_fields[] = {
	F_ID16(msg_send, id),
	F_ADDR(msg_send, to),
	F_U32(msg_send, to_device, DEV_MIN, DEV_MAX),
	F_U8(msg_send, class, MSG_CLASS_MESSAGE, MSG_CLASS_EPHEMERAL),
	F_U64(msg_send, timestamp_ms),
	F_BYTES32(msg_send, payload, MSG_PAYLOAD_MAX),
};
static const struct msg_field sent_fields[] = {
	F_ID16(msg_sent, id),
};
static const struct msg_field deliver_fields[] = {
	F_ID16(msg_deliver, id),
	F_ADDR(msg_deliver, from),
	F_U32(msg_deliver, from_device, DEV_MIN, DEV_MAX),
	F_U8(msg_deliver, class, MSG_CLASS_MESSAGE, MSG_CLASS_EPHEMERAL),
	F_U64(msg_deliver, timestamp_ms),
	F_U64(msg_deliver, received_ms),
	F_BYTES32(msg_deliver, payload, MSG_PAYLOAD_MAX),
};
static const struct msg_field ack_fields[] = {
	F_ID16(msg_ack, id),
};
static const struct msg_field notice_fields[] = {
	F_ID16(msg_notice, notice_id),
	F_U8(msg_notice, kind, MSG_NOTICE_EXPIRED, MSG_NOTICE_REFUSED),
	F_ID16(msg_notice, ref_id),
	F_ADDR(msg_notice, peer),
	F_U32(msg_notice, peer_device, DEV_MIN, DEV_MAX),
};
static const struct msg_field profile_set_fields[] = {
	F_STR8(msg_profile_set, name, MSG_NAME_MAX),
	F_STR16(msg_profile_set, status, MSG_STATUS_MAX),
};
static const struct msg_field profile_get_fields[] = {
	F_ADDR(msg_profile_get, user),
};
static const struct msg_field profile_fields[] = {
	F_ADDR(msg_profile, user),
	F_STR8(msg_profile, name, MSG_NAME_MAX),
	F_STR16(msg_profile, status, MSG_STATUS_MAX),
};
static const struct msg_field privacy_set_fields[] = {
	F_U8(msg_privacy_set, last_seen, MSG_LAST_SEEN_EVERYONE,
	    MSG_LAST_SEEN_NOBODY),
};
static const struct msg_field contact_add_fields[] = {
	F_ADDR(msg_contact_add, user),
};
static const struct msg_field contact_remove_fields[] = {
	F_ADDR(msg_contact_remove, user),
};
static const struct msg_field contacts_fields[] = {
	F_ADDRLIST(msg_contacts, users, MSG_CONTACTS_MAX),
};
static const struct msg_field presence_sub_fields[] = {
	F_ADDR(msg_presence_sub, user),
};
static const struct msg_field presence_unsub_fields[] = {
	F_ADDR(msg_presence_unsub, user),
};
static const struct msg_field presence_fields[] = {
	F_ADDR(msg_presence, user),
	F_U8(msg_presence, state, MSG_PRESENCE_HIDDEN, MSG_PRESENCE_OFFLINE),
	F_U64(msg_presence, last_seen_ms),
};

static const struct msg_field keys_put_fields[] = {
	F_KEY32(msg_keys_put, identity_key),
	F_U32(msg_keys_put, registration_id, 1, MSG_REG_ID_MAX),
	F_U32(msg_keys_put, signed_prekey_id, 1, MSG_PREKEY_ID_MAX),
	F_KEY32(msg_keys_put, signed_prekey),
	F_SIG64(msg_keys_put, signature),
	F_KEY32(msg_keys_put, last_resort),
	F_RECORDS(msg_keys_put, prekeys, MSG_PREKEY_REC_LEN, MSG_PREKEYS_MAX),
};
static const struct msg_field keys_count_fields[] = {
	F_U32(msg_keys_count, prekeys, 0, UINT32_MAX),
	F_U32(msg_keys_count, signed_prekey_id, 0, MSG_PREKEY_ID_MAX),
};
static const struct msg_field bundle_get_fields[] = {
	F_ADDR(msg_bundle_get, user),
	F_U32(msg_bundle_get, device_id, 0, DEV_MAX),
};
static const struct msg_field bundle_fields[] = {
	F_ADDR(msg_bundle, user),
	F_RECORDS(msg_bundle, devices, MSG_BUNDLE_REC_LEN, MSG_DEVICES_MAX),
};

static const struct msg_field fed_hello_fields[] = {
	F_DOMAIN(msg_fed_hello, domain),
	F_DOMAIN(msg_fed_hello, to_domain),
	F_U64(msg_fed_hello, time_ms),
};
static const struct msg_field fed_welcome_fields[] = {
	F_DOMAIN(msg_fed_welcome, domain),
	F_U64(msg_fed_welcome, time_ms),
};
static const struct msg_field fed_env_fields[] = {
	F_ID16(msg_fed_env, id),
	F_ADDR(msg_fed_env, from),
	F_U32(msg_fed_env, from_device, DEV_MIN, DEV_MAX),
	F_ADDR(msg_fed_env, to),
	F_U32(msg_fed_env, to_device, DEV_MIN, DEV_MAX),
	F_U8(msg_fed_env, class, MSG_CLASS_MESSAGE, MSG_CLASS_EPHEMERAL),
	F_U64(msg_fed_env, timestamp_ms),
	F_U64(msg_fed_env, received_ms),
	F_BYTES32(msg_fed_env, payload, MSG_PAYLOAD_MAX),
};
/* FED_RENV's fields sit in an embedded struct msg_fed_env; the rows name
 * them as the spec does (MSG_FLD would name them "env.id"). */
#define F_RENV(n, k, off, lo, hi) { n, (k), (uint16_t)(off), 0, (lo), (hi) }
#define RENV_OFF(f, T) MSG_OFF(msg_fed_renv, env.f, T)
static const struct msg_field fed_renv_fields[] = {
	F_RENV("id", MSG_K_ID16, MSG_OFF_ARR(msg_fed_renv, env.id, 16), 0, 0),
	F_RENV("from", MSG_K_ADDR, RENV_OFF(from, struct msg_str), 0,
	    IDENT_ADDR_MAX),
	F_RENV("from_device", MSG_K_U32, RENV_OFF(from_device, uint32_t),
	    DEV_MIN, DEV_MAX),
	F_RENV("to", MSG_K_ADDR, RENV_OFF(to, struct msg_str), 0,
	    IDENT_ADDR_MAX),
	F_RENV("to_device", MSG_K_U32, RENV_OFF(to_device, uint32_t),
	    DEV_MIN, DEV_MAX),
	F_RENV("class", MSG_K_U8, RENV_OFF(class, uint8_t), MSG_CLASS_MESSAGE,
	    MSG_CLASS_EPHEMERAL),
	F_RENV("timestamp_ms", MSG_K_U64, RENV_OFF(timestamp_ms, uint64_t), 0,
	    UINT64_MAX),
	F_RENV("received_ms", MSG_K_U64, RENV_OFF(received_ms, uint64_t), 0,
	    UINT64_MAX),
	F_RENV("payload", MSG_K_BYTES32, RENV_OFF(payload, struct msg_bytes),
	    0, MSG_PAYLOAD_MAX),
	F_SIG64(msg_fed_renv, sig),
};
static const struct msg_field fed_presence_fields[] = {
	F_ADDR(msg_fed_presence, to),
	F_ADDR(msg_fed_presence, user),
	F_U8(msg_fed_presence, state, MSG_PRESENCE_HIDDEN,
	    MSG_PRESENCE_OFFLINE),
	F_U64(msg_fed_presence, last_seen_ms),
};
static const struct msg_field fed_req_fields[] = {
	F_ADDR(msg_fed_req, requester),
	F_BYTES16(msg_fed_req, request, MSG_FED_REQ_MAX),
};
static const struct msg_field fed_resp_fields[] = {
	F_BYTES32(msg_fed_resp, response, MSG_FED_RESP_MAX),
};

#define DESC(n, f) { n, f, sizeof(f) / sizeof((f)[0]) }
#define DESC_EMPTY(n) { n, NULL, 0 }

/* Indexed by type code; a row without a name is not a type. */
static const struct msg_desc msg_descs[256] = {
	[MSG_ERROR] = DESC("ERROR", error_fields),
	[MSG_PING] = DESC("PING", ping_fields),
	[MSG_PONG] = DESC("PONG", pong_fields),
	[MSG_OK] = DESC_EMPTY("OK"),
	[MSG_REGISTER] = DESC("REGISTER", register_fields),
	[MSG_REGISTERED] = DESC("REGISTERED", registered_fields),
	[MSG_LOGIN] = DESC("LOGIN", login_fields),
	[MSG_LOGIN_OK] = DESC("LOGIN_OK", login_ok_fields),
	[MSG_DEVICE_ADD] = DESC("DEVICE_ADD", device_add_fields),
	[MSG_DEVICE_ADDED] = DESC("DEVICE_ADDED", device_added_fields),
	[MSG_DEVICE_LIST] = DESC("DEVICE_LIST", device_list_fields),
	[MSG_DEVICES] = DESC("DEVICES", devices_fields),
	[MSG_DEVICE_REMOVE] = DESC("DEVICE_REMOVE", device_remove_fields),
	[MSG_SEND] = DESC("SEND", send_fields),
	[MSG_SENT] = DESC("SENT", sent_fields),
	[MSG_DELIVER] = DESC("DELIVER", deliver_fields),
	[MSG_ACK] = DESC("ACK", ack_fields),
	[MSG_NOTICE] = DESC("NOTICE", notice_fields),
	[MSG_PROFILE_SET] = DESC("PROFILE_SET", profile_set_fields),
	[MSG_PROFILE_GET] = DESC("PROFILE_GET", profile_get_fields),
	[MSG_PROFILE] = DESC("PROFILE", profile_fields),
	[MSG_PRIVACY_SET] = DESC("PRIVACY_SET", privacy_set_fields),
	[MSG_CONTACT_ADD] = DESC("CONTACT_ADD", contact_add_fields),
	[MSG_CONTACT_REMOVE] = DESC("CONTACT_REMOVE", contact_remove_fields),
	[MSG_CONTACT_LIST] = DESC_EMPTY("CONTACT_LIST"),
	[MSG_CONTACTS] = DESC("CONTACTS", contacts_fields),
	[MSG_PRESENCE_SUB] = DESC("PRESENCE_SUB", presence_sub_fields),
	[MSG_PRESENCE_UNSUB] = DESC("PRESENCE_UNSUB", presence_unsub_fields),
	[MSG_PRESENCE] = DESC("PRESENCE", presence_fields),
	[MSG_KEYS_PUT] = DESC("KEYS_PUT", keys_put_fields),
	[MSG_KEYS_STATUS] = DESC_EMPTY("KEYS_STATUS"),
	[MSG_KEYS_COUNT] = DESC("KEYS_COUNT", keys_count_fields),
	[MSG_BUNDLE_GET] = DESC("BUNDLE_GET", bundle_get_fields),
	[MSG_BUNDLE] = DESC("BUNDLE", bundle_fields),
	[MSG_FED_HELLO] = DESC("FED_HELLO", fed_hello_fields),
	[MSG_FED_WELCOME] = DESC("FED_WELCOME", fed_welcome_fields),
	[MSG_FED_ENV] = DESC("FED_ENV", fed_env_fields),
	[MSG_FED_REQ] = DESC("FED_REQ", fed_req_fields),
	[MSG_FED_RESP] = DESC("FED_RESP", fed_resp_fields),
	[MSG_FED_RENV] = DESC("FED_RENV", fed_renv_fields),
	[MSG_FED_PRESENCE] = DESC("FED_PRESENCE", fed_presence_fields),
};

/* The caps in the table must fit the length prefixes that carry them. */
_Static_assert(MSG_INVITE_MAX <= UINT8_MAX &&
    MSG_DEVICE_NAME_MAX <= UINT8_MAX && MSG_NAME_MAX <= UINT8_MAX,
    "STR8 caps fit a u8");
_Static_assert(MSG_ERROR_DETAIL_MAX <= UINT16_MAX &&
    MSG_STATUS_MAX <= UINT16_MAX, "STR16 caps fit a u16");
_Static_assert(MSG_CONTACTS_MAX <= UINT16_MAX &&
    MSG_DEVICES_MAX <= UINT16_MAX, "list counts fit a u16");
_Static_assert(IDENT_ADDR_MAX <= UINT8_MAX, "addresses fit a u8 length");
_Static_assert(MSG_MAX_UNAUTH < MSG_MAX, "unauthenticated cap is tighter");
_Static_assert(MSG_HDR_LEN + IDENT_ADDR_MAX + 3 +
    MSG_DEVICES_MAX * MSG_BUNDLE_REC_LEN <= MSG_MAX, "a full BUNDLE fits");

const struct msg_desc *
msg_desc_get(uint8_t type)
{
	return msg_descs[type].name != NULL ? &msg_descs[type] : NULL;
}

int
msg_type_known(uint8_t type)
{
	return msg_desc_get(type) != NULL;
}

const char *
msg_type_name(uint8_t type)
{
	const struct msg_desc *d = msg_desc_get(type);

	return d != NULL ? d->name : "UNKNOWN";
}

/*
 * The most a kind's length prefix or count can say. A table cap above it
 * would be a table bug; taking the smaller of the two keeps the encoder
 * from ever writing a length that wrapped.
 */
static uint64_t
msg_kind_limit(const struct msg_field *f)
{
	uint64_t lim;

	switch (f->kind) {
	case MSG_K_STR8:
		lim = UINT8_MAX;
		break;
	case MSG_K_STR16:
	case MSG_K_BYTES16:
	case MSG_K_ADDRLIST:
	case MSG_K_RECORDS:
		lim = UINT16_MAX;
		break;
	case MSG_K_BYTES32:
		lim = UINT32_MAX;
		break;
	default:
		lim = UINT64_MAX;
		break;
	}
	return f->max < lim ? f->max : lim;
}

static size_t
msg_fixed_len(uint8_t kind)
{
	switch (kind) {
	case MSG_K_ID16:
		return MSG_ID_LEN;
	case MSG_K_KEY32:
		return MSG_KEY_LEN;
	case MSG_K_SIG64:
		return MSG_SIG_LEN;
	default:
		return 0;
	}
}

/* The content rule of a text-like kind: addresses and domains have a
 * shape, strings must be UTF-8. */
static int
msg_text_check(uint8_t kind, const char *p, size_t len)
{
	switch (kind) {
	case MSG_K_ADDR:
		return ident_addr_check(p, len);
	case MSG_K_DOMAIN:
		return ident_domain_check(p, len);
	default:
		return ident_utf8_check((const uint8_t *)p, len);
	}
}

/* Reads a u8, u16 or u32 length or count prefix. */
static int
msg_get_len(struct buf_reader *r, uint8_t kind, uint64_t *v)
{
	uint8_t v8;
	uint16_t v16;
	uint32_t v32;
	int rc;

	switch (kind) {
	case MSG_K_ADDR:
	case MSG_K_DOMAIN:
	case MSG_K_STR8:
		rc = buf_get_u8(r, &v8);
		*v = v8;
		return rc;
	case MSG_K_BYTES32:
		rc = buf_get_u32(r, &v32);
		*v = v32;
		return rc;
	default:
		rc = buf_get_u16(r, &v16);
		*v = v16;
		return rc;
	}
}

static void
msg_put_len(struct buf_writer *w, uint8_t kind, uint64_t v)
{
	switch (kind) {
	case MSG_K_ADDR:
	case MSG_K_DOMAIN:
	case MSG_K_STR8:
		buf_put_u8(w, (uint8_t)v);
		break;
	case MSG_K_BYTES32:
		buf_put_u32(w, (uint32_t)v);
		break;
	default:
		buf_put_u16(w, (uint16_t)v);
		break;
	}
}

/*
 * Walks count ADDRLIST items in r, checking each address. Used on the wire
 * by the decoder and on a caller's span by the encoder, so both hold lists
 * to one rule.
 */
static int
msg_addrlist_walk(struct buf_reader *r, uint64_t count)
{
	const uint8_t *p;
	uint64_t i;
	uint8_t n;
	int rc;

	for (i = 0; i < count; i++) {
		if ((rc = buf_get_u8(r, &n)) != 0 ||
		    (rc = buf_get_span(r, n, &p)) != 0)
			return rc;
		if ((rc = ident_addr_check((const char *)p, n)) != 0)
			return rc;
	}
	return 0;
}

static int
msg_field_decode(const struct msg_field *f, struct buf_reader *r,
    uint8_t *base)
{
	void *dst = base + f->off;
	const uint8_t *p;
	uint64_t v, n;
	uint8_t v8;
	uint16_t v16;
	uint32_t v32;
	size_t start;
	int rc;

	switch (f->kind) {
	case MSG_K_U8:
		if ((rc = buf_get_u8(r, &v8)) != 0)
			return rc;
		v = v8;
		*(uint8_t *)dst = v8;
		break;
	case MSG_K_U16:
		if ((rc = buf_get_u16(r, &v16)) != 0)
			return rc;
		v = v16;
		*(uint16_t *)dst = v16;
		break;
	case MSG_K_U32:
		if ((rc = buf_get_u32(r, &v32)) != 0)
			return rc;
		v = v32;
		*(uint32_t *)dst = v32;
		break;
	case MSG_K_U64:
		if ((rc = buf_get_u64(r, &v)) != 0)
			return rc;
		*(uint64_t *)dst = v;
		break;
	case MSG_K_ID16:
	case MSG_K_KEY32:
	case MSG_K_SIG64:
		return buf_get_bytes(r, dst, msg_fixed_len(f->kind));
	case MSG_K_ADDR:
	case MSG_K_DOMAIN:
	case MSG_K_STR8:
	case MSG_K_STR16:
	case MSG_K_BYTES16:
	case MSG_K_BYTES32:
		if ((rc = msg_get_len(r, f->kind, &n)) != 0)
			return rc;
		/* The cap before the bytes: a peer's declared length is
		 * refused for what it claims, not for what it sent. Addresses
		 * and domains have no cap of their own; their shape limits
		 * them and is checked below. */
		if (f->kind != MSG_K_ADDR && f->kind != MSG_K_DOMAIN &&
		    n > msg_kind_limit(f))
			return TERN_ETOOBIG;
		if ((rc = buf_get_span(r, (size_t)n, &p)) != 0)
			return rc;
		if (f->kind == MSG_K_BYTES16 || f->kind == MSG_K_BYTES32) {
			struct msg_bytes *b = dst;
			b->p = p;
			b->len = (size_t)n;
			return 0;
		}
		if ((rc = msg_text_check(f->kind, (const char *)p,
		    (size_t)n)) != 0)
			return rc;
		((struct msg_str *)dst)->p = (const char *)p;
		((struct msg_str *)dst)->len = (size_t)n;
		return 0;
	case MSG_K_ADDRLIST:
	case MSG_K_RECORDS: {
		struct msg_list *l = dst;
		if ((rc = msg_get_len(r, f->kind, &n)) != 0)
			return rc;
		if (n > msg_kind_limit(f))
			return TERN_ETOOBIG;
		start = r->off;
		if (f->kind == MSG_K_RECORDS) {
			/* count <= 65535 and reclen <= 65535: no overflow
			 * even with a 32-bit size_t. */
			rc = buf_get_span(r, (size_t)n * f->reclen, &p);
		} else
			rc = msg_addrlist_walk(r, n);
		if (rc != 0)
			return rc;
		l->p = r->p != NULL ? r->p + start : NULL;
		l->len = r->off - start;
		l->count = (uint16_t)n;
		return 0;
	}
	default:
		return TERN_EINVAL; /* a table bug, not the peer's */
	}
	if (v < f->min || v > f->max)
		return TERN_EFIELD;
	return 0;
}

static int
msg_field_encode(const struct msg_field *f, struct buf_writer *w,
    const uint8_t *base)
{
	const void *src = base + f->off;
	struct buf_reader lr;
	uint64_t v;
	int rc;

	switch (f->kind) {
	case MSG_K_U8:
		v = *(const uint8_t *)src;
		break;
	case MSG_K_U16:
		v = *(const uint16_t *)src;
		break;
	case MSG_K_U32:
		v = *(const uint32_t *)src;
		break;
	case MSG_K_U64:
		v = *(const uint64_t *)src;
		break;
	case MSG_K_ID16:
	case MSG_K_KEY32:
	case MSG_K_SIG64:
		buf_put_bytes(w, src, msg_fixed_len(f->kind));
		return 0;
	case MSG_K_ADDR:
	case MSG_K_DOMAIN:
	case MSG_K_STR8:
	case MSG_K_STR16: {
		const struct msg_str *s = src;
		if (s->p == NULL && s->len > 0)
			return TERN_EINVAL;
		if (f->kind != MSG_K_ADDR && f->kind != MSG_K_DOMAIN &&
		    s->len > msg_kind_limit(f))
			return TERN_ETOOBIG;
		/* Also what keeps an address or domain within its u8
		 * length: both checks refuse anything over 255 bytes. */
		if ((rc = msg_text_check(f->kind, s->p, s->len)) != 0)
			return rc;
		msg_put_len(w, f->kind, s->len);
		buf_put_bytes(w, s->p, s->len);
		return 0;
	}
	case MSG_K_BYTES16:
	case MSG_K_BYTES32: {
		const struct msg_bytes *b = src;
		if (b->p == NULL && b->len > 0)
			return TERN_EINVAL;
		if (b->len > msg_kind_limit(f))
			return TERN_ETOOBIG;
		msg_put_len(w, f->kind, b->len);
		buf_put_bytes(w, b->p, b->len);
		return 0;
	}
	case MSG_K_ADDRLIST:
	case MSG_K_RECORDS: {
		const struct msg_list *l = src;
		if (l->p == NULL && l->len > 0)
			return TERN_EINVAL;
		if (l->count > msg_kind_limit(f))
			return TERN_ETOOBIG;
		if (f->kind == MSG_K_RECORDS) {
			if (l->len != (size_t)l->count * f->reclen)
				return TERN_EINVAL;
		} else {
			buf_reader_init(&lr, l->p, l->len);
			rc = msg_addrlist_walk(&lr, l->count);
			if (rc == TERN_EFIELD)
				return rc;
			/* Items cut short or left over: the span and the
			 * count disagree, which is the caller's bug. */
			if (rc != 0 || buf_reader_left(&lr) != 0)
				return TERN_EINVAL;
		}
		buf_put_u16(w, l->count);
		buf_put_bytes(w, l->p, l->len);
		return 0;
	}
	default:
		return TERN_EINVAL;
	}
	if (v < f->min || v > f->max)
		return TERN_EFIELD;
	switch (f->kind) {
	case MSG_K_U8:
		buf_put_u8(w, (uint8_t)v);
		break;
	case MSG_K_U16:
		buf_put_u16(w, (uint16_t)v);
		break;
	case MSG_K_U32:
		buf_put_u32(w, (uint32_t)v);
		break;
	default:
		buf_put_u64(w, v);
		break;
	}
	return 0;
}

int
msg_body_decode(const struct msg_desc *d, struct buf_reader *r, void *out)
{
	size_t i;
	int rc;

	for (i = 0; i < d->nfields; i++)
		if ((rc = msg_field_decode(&d->fields[i], r, out)) != 0)
			return rc;
	return 0;
}

int
msg_body_encode(const struct msg_desc *d, const void *in,
    struct buf_writer *w)
{
	size_t i;
	int rc;

	for (i = 0; i < d->nfields; i++)
		if ((rc = msg_field_encode(&d->fields[i], w, in)) != 0)
			return rc;
	return buf_writer_err(w);
}

int
msg_decode(const uint8_t *in, size_t len, struct msg *out)
{
	const struct msg_desc *d;
	struct buf_reader r;
	uint8_t version;
	int rc;

	memset(out, 0, sizeof(*out));
	if (len > MSG_MAX)
		return TERN_ETOOBIG;
	buf_reader_init(&r, in, len);
	if ((rc = buf_get_u8(&r, &version)) != 0)
		goto fail;
	if (version != MSG_VERSION) {
		rc = TERN_EVERSION;
		goto fail;
	}
	if ((rc = buf_get_u8(&r, &out->type)) != 0)
		goto fail;
	if ((d = msg_desc_get(out->type)) == NULL) {
		rc = TERN_ETYPE;
		goto fail;
	}
	if ((rc = buf_get_u32(&r, &out->req)) != 0)
		goto fail;
	if ((rc = msg_body_decode(d, &r, &out->u)) != 0)
		goto fail;
	if (buf_reader_left(&r) != 0) {
		rc = TERN_ETRAILING;
		goto fail;
	}
	return 0;
fail:
	/* No half-filled struct with pointers into rejected input. */
	memset(out, 0, sizeof(*out));
	return rc;
}

int
msg_peek_header(const uint8_t *in, size_t len, uint8_t *type, uint32_t *req)
{
	struct buf_reader r;
	uint8_t version;
	int rc;

	*type = 0;
	*req = 0;
	buf_reader_init(&r, in, len);
	if ((rc = buf_get_u8(&r, &version)) != 0)
		return rc;
	if (version != MSG_VERSION)
		return TERN_EVERSION;
	if (buf_reader_left(&r) < MSG_HDR_LEN - 1)
		return TERN_ETRUNC;
	if ((rc = buf_get_u8(&r, type)) != 0 ||
	    (rc = buf_get_u32(&r, req)) != 0)
		return rc;
	return 0;
}

/* The one encoding path behind msg_encode and msg_encoded_size. */
static int
msg_write(const struct msg *m, struct buf_writer *w)
{
	const struct msg_desc *d;

	if ((d = msg_desc_get(m->type)) == NULL)
		return TERN_ETYPE;
	buf_put_u8(w, MSG_VERSION);
	buf_put_u8(w, m->type);
	buf_put_u32(w, m->req);
	return msg_body_encode(d, &m->u, w);
}

int
msg_encode(const struct msg *m, uint8_t *out, size_t cap, size_t *outlen)
{
	struct buf_writer w;
	int rc;

	*outlen = 0;
	/* A message over MSG_MAX is one no peer accepts: refuse it here as
	 * if the buffer ended there. */
	buf_writer_init(&w, out, cap < MSG_MAX ? cap : MSG_MAX);
	if ((rc = msg_write(m, &w)) != 0)
		return rc;
	*outlen = w.len;
	return 0;
}

size_t
msg_encoded_size(const struct msg *m)
{
	struct buf_writer w;

	buf_writer_init_count(&w);
	if (msg_write(m, &w) != 0 || w.len > MSG_MAX)
		return 0;
	return w.len;
}

int
msg_addrlist_next(const struct msg_list *l, size_t *pos,
    struct msg_str *addr)
{
	size_t n;

	if (l->p == NULL || *pos >= l->len)
		return 0;
	n = l->p[*pos];
	if (n > l->len - *pos - 1)
		return TERN_ETRUNC;
	addr->p = (const char *)l->p + *pos + 1;
	addr->len = n;
	*pos += 1 + n;
	return 1;
}

int
msg_addrlist_add(struct msg_list *l, struct buf_writer *w, const char *addr,
    size_t len)
{
	int rc;

	if ((rc = ident_addr_check(addr, len)) != 0)
		return rc;
	if (l->count == UINT16_MAX)
		return TERN_ETOOBIG;
	buf_put_u8(w, (uint8_t)len);
	buf_put_bytes(w, addr, len);
	if ((rc = buf_writer_err(w)) != 0)
		return rc;
	l->p = w->p;
	l->len = w->len;
	l->count++;
	return 0;
}

const uint8_t *
msg_record(const struct msg_list *l, size_t reclen, size_t i)
{
	if (reclen == 0 || i >= l->count || l->len / reclen <= i)
		return NULL;
	return l->p + i * reclen;
}

int
msg_record_add(struct msg_list *l, struct buf_writer *w, const uint8_t *rec,
    size_t reclen)
{
	int rc;

	if (l->count == UINT16_MAX)
		return TERN_ETOOBIG;
	buf_put_bytes(w, rec, reclen);
	if ((rc = buf_writer_err(w)) != 0)
		return rc;
	l->p = w->p;
	l->len = w->len;
	l->count++;
	return 0;
}
