/*
 * gen_msg_seeds.c: writes the seed corpus for fuzz_msg, one valid encoding
 * per message type (and a few with longer lists and texts), into the
 * directory named on the command line:
 *
 *   cc -Icommon tests/fuzz/gen_msg_seeds.c common/buf.c common/ident.c \
 *       common/msg.c common/tern_err.c -o /tmp/gen_msg_seeds
 *   /tmp/gen_msg_seeds tests/fuzz/corpus/msg
 *
 * The seeds are built with msg_encode from structs and checked to decode,
 * so a seed can never be one the codec itself refuses.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "msg.h"

#define S(lit) ((struct msg_str){ (lit), sizeof(lit) - 1 })

static const char *dir;
static uint8_t out[MSG_MAX];

static void
seed(const char *suffix, const struct msg *m)
{
	struct msg d;
	char path[512];
	size_t len;
	FILE *f;
	int rc;

	if ((rc = msg_encode(m, out, sizeof(out), &len)) != 0) {
		fprintf(stderr, "encode %s: %d\n", msg_type_name(m->type), rc);
		exit(1);
	}
	if (msg_decode(out, len, &d) != 0) {
		fprintf(stderr, "decode %s failed\n", msg_type_name(m->type));
		exit(1);
	}
	snprintf(path, sizeof(path), "%s/%02x-%s%s", dir, m->type,
	    msg_type_name(m->type), suffix);
	for (char *p = path + strlen(dir); *p != '\0'; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	if ((f = fopen(path, "wb")) == NULL ||
	    fwrite(out, 1, len, f) != len || fclose(f) != 0) {
		perror(path);
		exit(1);
	}
}

int
main(int argc, char **argv)
{
	static const uint8_t id[MSG_ID_LEN] = {
		0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
	};
	static uint8_t lbuf[512], payload[300];
	static const char *const names[] = {
		"alice@a.test", "bob@b.test", "+15551234@tel.test",
		"c.d_e-f@sub.example.test", "x@localhost"
	};
	struct buf_writer w;
	struct msg m;
	uint8_t rec[4];
	size_t i;

	if (argc != 2) {
		fprintf(stderr, "usage: %s <dir>\n", argv[0]);
		return 2;
	}
	dir = argv[1];

#define BEGIN(t, r) do { memset(&m, 0, sizeof(m)); m.type = (t); \
	m.req = (r); } while (0)

	BEGIN(MSG_ERROR, 1);
	m.u.error.code = (uint16_t)-TERN_ENOUSER;
	m.u.error.detail = S("no such user");
	seed("", &m);
	m.u.error.detail = S("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
	seed("-utf8", &m);
	BEGIN(MSG_PING, 2);
	m.u.ping.nonce = 0x0102030405060708u;
	seed("", &m);
	BEGIN(MSG_PONG, 2);
	m.u.pong.nonce = 0x0102030405060708u;
	seed("", &m);
	BEGIN(MSG_OK, 3);
	seed("", &m);
	BEGIN(MSG_REGISTER, 4);
	m.u.reg.user = S("alice@a.test");
	m.u.reg.invite = S("inv-123");
	m.u.reg.device_name = S("phone");
	seed("", &m);
	BEGIN(MSG_REGISTERED, 4);
	m.u.registered.device_id = 1;
	seed("", &m);
	BEGIN(MSG_LOGIN, 5);
	m.u.login.user = S("alice@a.test");
	m.u.login.device_id = 1;
	seed("", &m);
	BEGIN(MSG_LOGIN_OK, 5);
	m.u.login_ok.server_time_ms = 1700000000000u;
	m.u.login_ok.queued = 3;
	seed("", &m);
	BEGIN(MSG_DEVICE_ADD, 6);
	memset(m.u.device_add.new_device_key, 0xaa, MSG_KEY_LEN);
	m.u.device_add.device_name = S("laptop");
	seed("", &m);
	BEGIN(MSG_DEVICE_ADDED, 6);
	m.u.device_added.device_id = 2;
	seed("", &m);
	BEGIN(MSG_DEVICE_LIST, 7);
	m.u.device_list.user = S("bob@b.test");
	seed("", &m);
	BEGIN(MSG_DEVICES, 7);
	m.u.devices.user = S("bob@b.test");
	buf_writer_init(&w, lbuf, sizeof(lbuf));
	for (i = 1; i <= 5; i++) {
		buf_store_be32(rec, (uint32_t)i);
		if (msg_record_add(&m.u.devices.device_ids, &w, rec, 4) != 0)
			return 1;
	}
	seed("", &m);
	BEGIN(MSG_DEVICE_REMOVE, 8);
	m.u.device_remove.device_id = 2;
	seed("", &m);
	BEGIN(MSG_SEND, 9);
	memcpy(m.u.send.id, id, MSG_ID_LEN);
	m.u.send.to = S("bob@b.test");
	m.u.send.to_device = 2;
	m.u.send.class = MSG_CLASS_MESSAGE;
	m.u.send.timestamp_ms = 1700000000000u;
	m.u.send.payload = (struct msg_bytes){ (const uint8_t *)"\xde\xad"
	    "\xbe\xef", 4 };
	seed("", &m);
	for (i = 0; i < sizeof(payload); i++)
		payload[i] = (uint8_t)(i * 7);
	m.u.send.payload = (struct msg_bytes){ payload, sizeof(payload) };
	m.u.send.class = MSG_CLASS_EPHEMERAL;
	seed("-300", &m);
	BEGIN(MSG_SENT, 9);
	memcpy(m.u.sent.id, id, MSG_ID_LEN);
	seed("", &m);
	BEGIN(MSG_DELIVER, 0);
	memcpy(m.u.deliver.id, id, MSG_ID_LEN);
	m.u.deliver.from = S("alice@a.test");
	m.u.deliver.from_device = 1;
	m.u.deliver.class = MSG_CLASS_RECEIPT;
	m.u.deliver.timestamp_ms = 1700000000000u;
	m.u.deliver.received_ms = 1700000000500u;
	m.u.deliver.payload = (struct msg_bytes){ payload, 16 };
	seed("", &m);
	BEGIN(MSG_ACK, 10);
	memcpy(m.u.ack.id, id, MSG_ID_LEN);
	seed("", &m);
	BEGIN(MSG_NOTICE, 0);
	memset(m.u.notice.notice_id, 0x11, MSG_ID_LEN);
	m.u.notice.kind = MSG_NOTICE_EXPIRED;
	memcpy(m.u.notice.ref_id, id, MSG_ID_LEN);
	m.u.notice.peer = S("bob@b.test");
	m.u.notice.peer_device = 2;
	seed("", &m);
	BEGIN(MSG_PROFILE_SET, 11);
	m.u.profile_set.name = S("Alice");
	m.u.profile_set.status = S("h\xc3\xa9llo");
	seed("", &m);
	BEGIN(MSG_PROFILE_GET, 12);
	m.u.profile_get.user = S("bob@b.test");
	seed("", &m);
	BEGIN(MSG_PROFILE, 12);
	m.u.profile.user = S("bob@b.test");
	m.u.profile.name = S("Bob");
	m.u.profile.status = S("");
	seed("", &m);
	BEGIN(MSG_PRIVACY_SET, 13);
	m.u.privacy_set.last_seen = MSG_LAST_SEEN_CONTACTS;
	seed("", &m);
	BEGIN(MSG_CONTACT_ADD, 14);
	m.u.contact_add.user = S("bob@b.test");
	seed("", &m);
	BEGIN(MSG_CONTACT_REMOVE, 15);
	m.u.contact_remove.user = S("bob@b.test");
	seed("", &m);
	BEGIN(MSG_CONTACT_LIST, 16);
	seed("", &m);
	BEGIN(MSG_CONTACTS, 16);
	buf_writer_init(&w, lbuf, sizeof(lbuf));
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (msg_addrlist_add(&m.u.contacts.users, &w, names[i],
		    strlen(names[i])) != 0)
			return 1;
	seed("", &m);
	BEGIN(MSG_PRESENCE_SUB, 17);
	m.u.presence_sub.user = S("bob@b.test");
	seed("", &m);
	BEGIN(MSG_PRESENCE_UNSUB, 18);
	m.u.presence_unsub.user = S("bob@b.test");
	seed("", &m);
	BEGIN(MSG_PRESENCE, 0);
	m.u.presence.user = S("bob@b.test");
	m.u.presence.state = MSG_PRESENCE_OFFLINE;
	m.u.presence.last_seen_ms = 1700000000000u;
	seed("", &m);
	{
		static uint8_t kbuf[2 * MSG_BUNDLE_REC_LEN];
		uint8_t brec[MSG_BUNDLE_REC_LEN];
		struct buf_writer kw;

		BEGIN(MSG_KEYS_PUT, 19);
		memset(m.u.keys_put.identity_key, 0x11, MSG_KEY_LEN);
		m.u.keys_put.registration_id = 42;
		m.u.keys_put.signed_prekey_id = 3;
		memset(m.u.keys_put.signed_prekey, 0x22, MSG_KEY_LEN);
		memset(m.u.keys_put.signature, 0x33, MSG_SIG_LEN);
		memset(m.u.keys_put.last_resort, 0x44, MSG_KEY_LEN);
		buf_writer_init(&kw, kbuf, sizeof(kbuf));
		memset(brec, 0x55, sizeof(brec));
		buf_store_be32(brec, 1);
		if (msg_record_add(&m.u.keys_put.prekeys, &kw, brec,
		    MSG_PREKEY_REC_LEN) != 0)
			return 1;
		seed("", &m);
		BEGIN(MSG_KEYS_STATUS, 20);
		seed("", &m);
		BEGIN(MSG_KEYS_COUNT, 20);
		m.u.keys_count.prekeys = 9;
		m.u.keys_count.signed_prekey_id = 3;
		seed("", &m);
		BEGIN(MSG_BUNDLE_GET, 21);
		m.u.bundle_get.user = S("bob@b.test");
		seed("", &m);
		BEGIN(MSG_BUNDLE, 21);
		m.u.bundle.user = S("bob@b.test");
		buf_writer_init(&kw, kbuf, sizeof(kbuf));
		memset(brec, 0x66, sizeof(brec));
		buf_store_be32(brec, 1);
		if (msg_record_add(&m.u.bundle.devices, &kw, brec,
		    MSG_BUNDLE_REC_LEN) != 0)
			return 1;
		seed("", &m);
	}
	BEGIN(MSG_FED_HELLO, 22);
	m.u.fed_hello.domain = S("a.test");
	m.u.fed_hello.to_domain = S("b.test");
	m.u.fed_hello.time_ms = 1700000000000u;
	seed("", &m);
	BEGIN(MSG_FED_WELCOME, 22);
	m.u.fed_welcome.domain = S("b.test");
	m.u.fed_welcome.time_ms = 1700000000000u;
	seed("", &m);
	BEGIN(MSG_FED_ENV, 23);
	memcpy(m.u.fed_env.id, id, MSG_ID_LEN);
	m.u.fed_env.from = S("alice@a.test");
	m.u.fed_env.from_device = 1;
	m.u.fed_env.to = S("bob@b.test");
	m.u.fed_env.to_device = 2;
	m.u.fed_env.class = 1;
	m.u.fed_env.timestamp_ms = 1700000000000u;
	m.u.fed_env.received_ms = 1700000000001u;
	m.u.fed_env.payload.p = payload;
	m.u.fed_env.payload.len = 32;
	seed("", &m);
	BEGIN(MSG_FED_REQ, 24);
	m.u.fed_req.requester = S("alice@a.test");
	m.u.fed_req.request.p = payload;
	m.u.fed_req.request.len = 16;
	seed("", &m);
	BEGIN(MSG_FED_RESP, 24);
	m.u.fed_resp.response.p = payload;
	m.u.fed_resp.response.len = 16;
	seed("", &m);
	BEGIN(MSG_FED_RENV, 25);
	memcpy(m.u.fed_renv.env.id, id, MSG_ID_LEN);
	m.u.fed_renv.env.from = S("alice@a.test");
	m.u.fed_renv.env.from_device = 1;
	m.u.fed_renv.env.to = S("bob@b.test");
	m.u.fed_renv.env.to_device = 2;
	m.u.fed_renv.env.class = 1;
	m.u.fed_renv.env.timestamp_ms = 1700000000000u;
	m.u.fed_renv.env.received_ms = 1700000000001u;
	m.u.fed_renv.env.payload.p = payload;
	m.u.fed_renv.env.payload.len = 32;
	memset(m.u.fed_renv.sig, 0x5a, MSG_SIG_LEN);
	seed("", &m);
	BEGIN(MSG_FED_PRESENCE, 26);
	m.u.fed_presence.to = S("bob@b.test");
	m.u.fed_presence.user = S("alice@a.test");
	m.u.fed_presence.state = 1;
	m.u.fed_presence.last_seen_ms = 1700000000000u;
	seed("", &m);
	return 0;
}
