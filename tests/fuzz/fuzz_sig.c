/*
 * fuzz_sig.c: sig_decrypt (crypto/sig.h) on arbitrary bytes from a peer
 * with whom a session exists: the type byte, libsignal's deserializers
 * and our unpadding must refuse garbage without crashing or leaking. Each
 * input runs inside a transaction that is rolled back, so every input
 * meets the same session state. The seeds (corpus/sig) are a prekey and
 * a whisper message from a throwaway session: they fail this session's
 * MAC but lead the fuzzer into every deserializer.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "sig.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct peer {
	sqlite3 *db;
	struct sig *s;
};

static struct peer A, B;
static int ready;

static void
must(int ok)
{
	if (!ok)
		abort();
}

static void
peer_open(struct peer *p)
{
	must(sqlite3_open(":memory:", &p->db) == SQLITE_OK);
	must(sig_open(p->db, &p->s) == 0);
	must(sig_identity_init(p->s) >= 0);
}

/* A session a -> b in which b has received one message. */
static void
setup(void)
{
	struct sig_signed_prekey spk;
	struct sig_prekey pk;
	struct sig_bundle bd;
	uint8_t ct[1024], pt[256];
	struct buf_writer w, o;

	peer_open(&A);
	peer_open(&B);
	memset(&bd, 0, sizeof(bd));
	must(sig_local(B.s, bd.identity, &bd.registration_id) == 0);
	must(sig_signed_prekey(B.s, 1700000000000ull, &spk, NULL) == 0);
	must(sig_prekeys_new(B.s, 1, &pk) == 0);
	bd.device_id = 1;
	bd.signed_prekey_id = spk.id;
	memcpy(bd.signed_prekey, spk.pub, SIG_KEY_LEN);
	memcpy(bd.signature, spk.signature, SIG_SIG_LEN);
	bd.prekey_id = pk.id;
	memcpy(bd.prekey, pk.pub, SIG_KEY_LEN);
	must(sig_session_build(A.s, "b@f.test", &bd) == 0);
	buf_writer_init(&w, ct, sizeof(ct));
	must(sig_encrypt(A.s, "b@f.test", 1, (const uint8_t *)"hi", 2, &w) ==
	    0);
	buf_writer_init(&o, pt, sizeof(pt));
	must(sig_decrypt(B.s, "a@f.test", 1, ct, w.len, &o) == 0);
	ready = 1;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t out[70000];
	struct buf_writer o;
	int r;

	if (!ready)
		setup();
	must(sqlite3_exec(B.db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK);
	buf_writer_init(&o, out, sizeof(out));
	r = sig_decrypt(B.s, "a@f.test", 1, data, size, &o);
	/* Anything may fail; nothing may succeed without a MAC we made. */
	if (r == 0 && size < 2)
		abort();
	must(sqlite3_exec(B.db, "ROLLBACK", NULL, NULL, NULL) == SQLITE_OK);
	return 0;
}
