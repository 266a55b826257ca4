/*
 * test_noise_vectors.c: the Noise engine (crypto/noise.c) checked byte for
 * byte against every *_25519_ChaChaPoly_BLAKE2b vector of cacophony.txt and
 * against a few multi-psk vectors made with python3-dissononce, then
 * against its failure rules: bad DH results, caps, tampering, replay, nonce
 * exhaustion, unknown names and calls out of turn.
 *
 * The vector file is JSON. The reader below is deliberately small and
 * strict: objects, arrays and strings without escapes, and anything else
 * fails the test, so a changed file cannot be half-read in silence.
 */
#include <sodium.h>
#include <stdbool.h>

#include "noise.h"
#include "tt.h"

#define SUITE "_25519_ChaChaPoly_BLAKE2b"
#define CACOPHONY_VECTORS 944  /* all suites, as the README counts them */
#define SUITE_VECTORS 59       /* the ones for our suite */

/* A strict JSON reader. */

enum json_type {
	JSON_OBJECT = 1,
	JSON_ARRAY,
	JSON_STRING
};

struct json_node {
	enum json_type type; /* what the node is */
	const char *key;     /* member name, when inside an object */
	size_t keylen;       /* its length */
	const char *str;     /* a string's bytes, as written */
	size_t len;          /* their length */
	int child;           /* first element or member, -1 if none */
	int next;            /* next sibling, -1 if last */
};

struct json_doc {
	const char *src;         /* the text */
	const char *p;           /* where parsing is */
	const char *end;         /* end of the text */
	struct json_node *nodes; /* all nodes; the root is 0 */
	int count;               /* nodes in use */
	int cap;                 /* nodes allocated */
};

#define JSON_MAX_DEPTH 8

static void json_fail(const struct json_doc *, const char *)
    __attribute__((noreturn));

static void
json_fail(const struct json_doc *d, const char *what)
{
	tt_fail(__FILE__, __LINE__, "json: %s at offset %ld", what,
	    (long)(d->p - d->src));
}

static int
json_new(struct json_doc *d, enum json_type type)
{
	struct json_node *n;

	if (d->count == d->cap) {
		d->cap = d->cap ? d->cap * 2 : 1024;
		d->nodes = realloc(d->nodes,
		    sizeof(*d->nodes) * (size_t)d->cap);
		TT_ASSERT(d->nodes != NULL);
	}
	n = &d->nodes[d->count];
	memset(n, 0, sizeof *n);
	n->type = type;
	n->child = n->next = -1;
	return d->count++;
}

static void
json_ws(struct json_doc *d)
{
	while (d->p < d->end && (*d->p == ' ' || *d->p == '\t' ||
	    *d->p == '\n' || *d->p == '\r'))
		d->p++;
}

static void
json_string(struct json_doc *d, const char **s, size_t *len)
{
	unsigned char c;

	if (d->p == d->end || *d->p != '"')
		json_fail(d, "expected a string");
	*s = ++d->p;
	for (;;) {
		if (d->p == d->end)
			json_fail(d, "unterminated string");
		c = (unsigned char)*d->p;
		if (c == '"')
			break;
		if (c == '\\')
			json_fail(d, "escape in string");
		if (c < 0x20)
			json_fail(d, "control character in string");
		d->p++;
	}
	*len = (size_t)(d->p - *s);
	d->p++;
}

static int
json_value(struct json_doc *d, int depth)
{
	const char *s, *key = NULL;
	size_t len, keylen = 0;
	char close;
	int n, c, prev = -1;

	json_ws(d);
	if (d->p == d->end)
		json_fail(d, "unexpected end");
	if (depth > JSON_MAX_DEPTH)
		json_fail(d, "nested too deep");
	if (*d->p == '"') {
		n = json_new(d, JSON_STRING);
		json_string(d, &s, &len);
		d->nodes[n].str = s;
		d->nodes[n].len = len;
		return n;
	}
	if (*d->p != '{' && *d->p != '[')
		json_fail(d, "only objects, arrays and strings are expected");

	close = *d->p == '{' ? '}' : ']';
	n = json_new(d, close == '}' ? JSON_OBJECT : JSON_ARRAY);
	d->p++;
	json_ws(d);
	if (d->p < d->end && *d->p == close) {
		d->p++;
		return n;
	}
	for (;;) {
		if (close == '}') {
			json_ws(d);
			json_string(d, &key, &keylen);
			json_ws(d);
			if (d->p == d->end || *d->p != ':')
				json_fail(d, "expected ':'");
			d->p++;
			for (c = d->nodes[n].child; c != -1;
			    c = d->nodes[c].next)
				if (d->nodes[c].keylen == keylen &&
				    memcmp(d->nodes[c].key, key, keylen) == 0)
					json_fail(d, "duplicate key");
		}
		c = json_value(d, depth + 1);
		d->nodes[c].key = key;
		d->nodes[c].keylen = keylen;
		if (prev == -1)
			d->nodes[n].child = c;
		else
			d->nodes[prev].next = c;
		prev = c;
		json_ws(d);
		if (d->p == d->end)
			json_fail(d, "unexpected end");
		if (*d->p == ',') {
			d->p++;
			continue;
		}
		if (*d->p != close)
			json_fail(d, "expected ',' or a closing bracket");
		d->p++;
		return n;
	}
}

static void
json_parse(struct json_doc *d, const char *src, size_t len)
{
	memset(d, 0, sizeof *d);
	d->src = d->p = src;
	d->end = src + len;
	TT_EQ(json_value(d, 0), 0);
	json_ws(d);
	if (d->p != d->end)
		json_fail(d, "bytes after the document");
	if (d->nodes[0].type != JSON_OBJECT)
		json_fail(d, "the document is not an object");
}

/* Whether member n of an object is called key. */
static bool
json_named(const struct json_doc *d, int n, const char *key)
{
	return d->nodes[n].keylen == strlen(key) &&
	    memcmp(d->nodes[n].key, key, d->nodes[n].keylen) == 0;
}

static int
json_get(const struct json_doc *d, int obj, const char *key)
{
	int c;

	for (c = d->nodes[obj].child; c != -1; c = d->nodes[c].next)
		if (json_named(d, c, key))
			return c;
	return -1;
}

static bool
json_is(const struct json_doc *d, int n, enum json_type type)
{
	return n >= 0 && d->nodes[n].type == type;
}

static size_t
json_hex(const struct json_doc *d, int n, uint8_t *out, size_t cap)
{
	long r;

	TT_ASSERT(json_is(d, n, JSON_STRING));
	r = tt_unhex(d->nodes[n].str, d->nodes[n].len, out, cap);
	if (r < 0)
		tt_fail(__FILE__, __LINE__, "bad hex: %.*s",
		    (int)d->nodes[n].len, d->nodes[n].str);
	return (size_t)r;
}

static void
json_key(const struct json_doc *d, int n, uint8_t out[32])
{
	TT_EQ(json_hex(d, n, out, 32), 32);
}

/* The vectors. */

static const char *const vector_keys[] = {
	"protocol_name", "init_prologue", "init_static", "init_ephemeral",
	"init_remote_static", "init_psks", "resp_prologue", "resp_static",
	"resp_ephemeral", "resp_remote_static", "resp_psks", "handshake_hash",
	"messages",
};

/* Which vector is running, for a failure's last words. */
static char vector_current[NOISE_MAX_NAME * 4];

static void
vector_report(void)
{
	if (vector_current[0] != '\0')
		fprintf(stderr, "  while checking %s\n", vector_current);
}

/* Names what runs next in any failure report; NULL when done. */
static void
vector_watch(const char *name)
{
	static bool registered;

	if (!registered) {
		TT_EQ(atexit(vector_report), 0);
		registered = true;
	}
	snprintf(vector_current, sizeof vector_current, "%s",
	    name != NULL ? name : "");
}

/* A message is exactly {"payload": hex, "ciphertext": hex}. */
static void
vector_check_message(const struct json_doc *d, int m)
{
	int f;

	TT_ASSERT(json_is(d, m, JSON_OBJECT));
	TT_ASSERT(json_is(d, json_get(d, m, "payload"), JSON_STRING));
	TT_ASSERT(json_is(d, json_get(d, m, "ciphertext"), JSON_STRING));
	f = d->nodes[m].child;
	TT_EQ(d->nodes[d->nodes[f].next].next, -1);
}

/* Every vector, ours or not, must have the shape the README gives. */
static void
vector_check_shape(const struct json_doc *d, int v)
{
	size_t i;
	int c, m, f;
	bool known;

	TT_ASSERT(json_is(d, v, JSON_OBJECT));
	for (c = d->nodes[v].child; c != -1; c = d->nodes[c].next) {
		known = false;
		for (i = 0; i < sizeof vector_keys / sizeof vector_keys[0]; i++)
			if (json_named(d, c, vector_keys[i]))
				known = true;
		if (!known)
			tt_fail(__FILE__, __LINE__, "unknown vector field %.*s",
			    (int)d->nodes[c].keylen, d->nodes[c].key);
		if (json_named(d, c, "init_psks") ||
		    json_named(d, c, "resp_psks")) {
			TT_ASSERT(json_is(d, c, JSON_ARRAY));
			for (f = d->nodes[c].child; f != -1;
			    f = d->nodes[f].next)
				TT_ASSERT(json_is(d, f, JSON_STRING));
		} else if (json_named(d, c, "messages")) {
			TT_ASSERT(json_is(d, c, JSON_ARRAY));
			for (m = d->nodes[c].child; m != -1;
			    m = d->nodes[m].next)
				vector_check_message(d, m);
		} else
			TT_ASSERT(json_is(d, c, JSON_STRING));
	}
	TT_ASSERT(json_is(d, json_get(d, v, "protocol_name"), JSON_STRING));
	TT_ASSERT(json_get(d, v, "init_prologue") >= 0);
	TT_ASSERT(json_get(d, v, "resp_prologue") >= 0);
	TT_ASSERT(json_get(d, v, "messages") >= 0);
}

/* One side's HandshakeState from its vector fields ("init" or "resp"). */
static void
vector_side(const struct json_doc *d, int v, const char *side,
    const char *name, bool initiator, struct noise_handshake *hs)
{
	static uint8_t prologue[NOISE_MAX_MSG];
	uint8_t key[32];
	char field[32];
	size_t len;
	int n, c;

	snprintf(field, sizeof field, "%s_prologue", side);
	len = json_hex(d, json_get(d, v, field), prologue, sizeof prologue);
	TT_OK(noise_handshake_init(hs, name, initiator, prologue, len));

	snprintf(field, sizeof field, "%s_static", side);
	if ((n = json_get(d, v, field)) >= 0) {
		json_key(d, n, key);
		TT_OK(noise_handshake_set_static(hs, key));
	}
	snprintf(field, sizeof field, "%s_ephemeral", side);
	if ((n = json_get(d, v, field)) >= 0) {
		json_key(d, n, key);
		TT_OK(noise_handshake_set_ephemeral(hs, key));
	}
	snprintf(field, sizeof field, "%s_remote_static", side);
	if ((n = json_get(d, v, field)) >= 0) {
		json_key(d, n, key);
		TT_OK(noise_handshake_set_remote_static(hs, key));
	}
	snprintf(field, sizeof field, "%s_psks", side);
	if ((n = json_get(d, v, field)) >= 0) {
		for (c = d->nodes[n].child; c != -1; c = d->nodes[c].next) {
			json_key(d, c, key);
			TT_OK(noise_handshake_add_psk(hs, key));
		}
	}
}

/*
 * Runs one vector with an initiator and a responder: every message must
 * come out byte for byte as the vector has it and read back to its
 * payload, through the handshake and on through the split ciphers.
 */
static void
vector_run(const struct json_doc *d, int v, const char *name)
{
	static uint8_t payload[NOISE_MAX_MSG], ct[NOISE_MAX_MSG];
	static uint8_t out[NOISE_MAX_MSG], got[NOISE_MAX_MSG];
	struct noise_handshake ini, res, *snd, *rcv;
	struct noise_cipher ini_i2r, ini_r2i, res_i2r, res_r2i, *tx, *rx;
	uint8_t hash[NOISE_HASHLEN];
	size_t plen, ctlen, outlen, gotlen;
	bool split = false, from_init;
	int m, i, n;

	vector_side(d, v, "init", name, true, &ini);
	vector_side(d, v, "resp", name, false, &res);

	n = json_get(d, v, "messages");
	for (m = d->nodes[n].child, i = 0; m != -1;
	    m = d->nodes[m].next, i++) {
		plen = json_hex(d, json_get(d, m, "payload"), payload,
		    sizeof payload);
		ctlen = json_hex(d, json_get(d, m, "ciphertext"), ct,
		    sizeof ct);
		if (!split) {
			snd = i % 2 == 0 ? &ini : &res;
			rcv = i % 2 == 0 ? &res : &ini;
			TT_EQ(noise_handshake_action(snd),
			    NOISE_ACTION_WRITE_MESSAGE);
			TT_EQ(noise_handshake_action(rcv),
			    NOISE_ACTION_READ_MESSAGE);
			TT_OK(noise_handshake_write(snd, payload, plen, out,
			    sizeof out, &outlen));
			TT_EQ(outlen, ctlen);
			TT_MEMEQ(out, ct, ctlen);
			TT_OK(noise_handshake_read(rcv, out, outlen, got,
			    sizeof got, &gotlen));
			TT_EQ(gotlen, plen);
			TT_MEMEQ(got, payload, plen);
			if (noise_handshake_action(&ini) != NOISE_ACTION_SPLIT)
				continue;
			TT_EQ(noise_handshake_action(&res), NOISE_ACTION_SPLIT);
			TT_MEMEQ(noise_handshake_hash(&ini),
			    noise_handshake_hash(&res), NOISE_HASHLEN);
			if ((n = json_get(d, v, "handshake_hash")) >= 0) {
				TT_EQ(json_hex(d, n, hash, sizeof hash),
				    NOISE_HASHLEN);
				TT_MEMEQ(noise_handshake_hash(&ini), hash,
				    NOISE_HASHLEN);
			}
			TT_OK(noise_handshake_split(&ini, &ini_i2r, &ini_r2i));
			TT_OK(noise_handshake_split(&res, &res_i2r, &res_r2i));
			split = true;
			continue;
		}
		/* Transport: alternating on, or all one way. */
		from_init = ini.one_way || i % 2 == 0;
		tx = from_init ? &ini_i2r : &res_r2i;
		rx = from_init ? &res_i2r : &ini_r2i;
		TT_OK(noise_cipher_encrypt(tx, NULL, 0, payload, plen, out,
		    sizeof out, &outlen));
		TT_EQ(outlen, ctlen);
		TT_MEMEQ(out, ct, ctlen);
		TT_OK(noise_cipher_decrypt(rx, NULL, 0, out, outlen, got,
		    sizeof got, &gotlen));
		TT_EQ(gotlen, plen);
		TT_MEMEQ(got, payload, plen);
	}
	TT_ASSERT(split);
	noise_handshake_wipe(&ini);
	noise_handshake_wipe(&res);
	noise_cipher_wipe(&ini_i2r);
	noise_cipher_wipe(&ini_r2i);
	noise_cipher_wipe(&res_i2r);
	noise_cipher_wipe(&res_r2i);
}

/*
 * Checks every vector of the document's suite; returns how many there
 * were, and how many vectors in all through *total.
 */
static int
vectors_run(const char *src, size_t len, int *total)
{
	char name[NOISE_MAX_NAME + 1];
	struct json_doc d;
	size_t nlen, slen = strlen(SUITE);
	int vecs, v, checked = 0;

	json_parse(&d, src, len);
	vecs = json_get(&d, 0, "vectors");
	TT_ASSERT(json_is(&d, vecs, JSON_ARRAY));
	TT_EQ(d.nodes[vecs].next, -1);
	TT_EQ(d.nodes[0].child, vecs);
	*total = 0;
	for (v = d.nodes[vecs].child; v != -1; v = d.nodes[v].next) {
		vector_check_shape(&d, v);
		(*total)++;
		nlen = d.nodes[json_get(&d, v, "protocol_name")].len;
		if (nlen < slen || memcmp(d.nodes[json_get(&d, v,
		    "protocol_name")].str + nlen - slen, SUITE, slen) != 0)
			continue;
		TT_ASSERT(nlen <= NOISE_MAX_NAME);
		memcpy(name, d.nodes[json_get(&d, v, "protocol_name")].str,
		    nlen);
		name[nlen] = '\0';
		vector_watch(name);
		vector_run(&d, v, name);
		vector_watch(NULL);
		checked++;
	}
	free(d.nodes);
	return checked;
}

TT_CASE(noise__vectors__all_25519_chachapoly_blake2b)
{
	char *src;
	size_t len;
	int checked, total;

	src = tt_read_file(TERN_TEST_DATA "/vectors/cacophony.txt", &len);
	TT_ASSERT(src != NULL);
	checked = vectors_run(src, len, &total);
	free(src);
	TT_EQ(total, CACOPHONY_VECTORS);
	TT_EQ(checked, SUITE_VECTORS);
	printf("noise vectors checked: %d\n", checked);
}

/*
 * Several psk modifiers in one name appear in no cacophony vector. These
 * were made with python3-dissononce (Debian), using cacophony's keys,
 * prologues and payloads, after checking that dissononce reproduces the
 * cacophony vectors of IKpsk2, XX, NNpsk0, X1X1 and Xpsk1.
 */
static const char noise_extra_vectors[] =
	"{\"vectors\": ["
	"{"
	"\"protocol_name\": \"Noise_NNpsk0+psk2_25519_ChaChaPoly_BLAKE2b"
	"\","
	"\"init_prologue\": \"4a6f686e2047616c74"
	"\","
	"\"init_ephemeral\": \"893e28b9dc6ca8d611ab664754b8ceb7bac51173"
	"49a4439a6b0569da977c464a"
	"\","
	"\"init_psks\": ["
	"\"54686973206973206d7920417573747269616e20706572737065637469766521\","
	"\"4e6f6973652069732061206e6963652070726f746f636f6c20746f6f2121213f\""
	"],"
	"\"resp_prologue\": \"4a6f686e2047616c74"
	"\","
	"\"resp_ephemeral\": \"bbdb4cdbd309f1a1f2e1456967fe288cadd6f712"
	"d65dc7b7793d5e63da6b375b"
	"\","
	"\"resp_psks\": ["
	"\"54686973206973206d7920417573747269616e20706572737065637469766521\","
	"\"4e6f6973652069732061206e6963652070726f746f636f6c20746f6f2121213f\""
	"],"
	"\"handshake_hash\": \"feb969f24958b32160d753faaba5156cc7210307"
	"c50b4f83fab9800be1d1efe3309f7fefb7d12bab"
	"3c7aa13a1f9faee5df7bd374e6a52ee4dff84c54"
	"a161c295"
	"\","
	"\"messages\": ["
	"{\"payload\": \"4c756477696720766f6e204d69736573\","
	"\"ciphertext\": \"ca35def5ae56cec33dc2036731ab14896bc4c75d"
	"bb07a61f879f8e3afa4c7944431ca1d0bbe520f3"
	"f92a4351646653b657912e22d4479f344978ade7"
	"b15fd788"
	"\"},"
	"{\"payload\": \"4d757272617920526f746862617264\","
	"\"ciphertext\": \"95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7c"
	"cb39ec5be34069f1448088439b410b7b2f153648"
	"67327a78eb565ab35e374e9333500f1c837b1b5e"
	"05027c"
	"\"},"
	"{\"payload\": \"462e20412e20486179656b\","
	"\"ciphertext\": \"6aea4b7b97d331cb1ee6862eb517eb6ddc5dcc38"
	"9b80b171c7f785"
	"\"},"
	"{\"payload\": \"4361726c204d656e676572\","
	"\"ciphertext\": \"0b4037699b5e75de1e836d34dfd9a392c2f27610"
	"452654a89bfe7e"
	"\"}"
	"]"
	"},"
	"{"
	"\"protocol_name\": \"Noise_XXpsk0+psk2+psk3_25519_ChaChaPoly_BLAKE2b"
	"\","
	"\"init_prologue\": \"4a6f686e2047616c74"
	"\","
	"\"init_static\": \"e61ef9919cde45dd5f82166404bd08e38bceb5df"
	"dfded0a34c8df7ed542214d1"
	"\","
	"\"init_ephemeral\": \"893e28b9dc6ca8d611ab664754b8ceb7bac51173"
	"49a4439a6b0569da977c464a"
	"\","
	"\"init_psks\": ["
	"\"54686973206973206d7920417573747269616e20706572737065637469766521\","
	"\"4e6f6973652069732061206e6963652070726f746f636f6c20746f6f2121213f\","
	"\"12566796473656073727560702e6169627473757140297d60237960237968645\""
	"],"
	"\"resp_prologue\": \"4a6f686e2047616c74"
	"\","
	"\"resp_static\": \"4a3acbfdb163dec651dfa3194dece676d437029c"
	"62a408b4c5ea9114246e4893"
	"\","
	"\"resp_ephemeral\": \"bbdb4cdbd309f1a1f2e1456967fe288cadd6f712"
	"d65dc7b7793d5e63da6b375b"
	"\","
	"\"resp_psks\": ["
	"\"54686973206973206d7920417573747269616e20706572737065637469766521\","
	"\"4e6f6973652069732061206e6963652070726f746f636f6c20746f6f2121213f\","
	"\"12566796473656073727560702e6169627473757140297d60237960237968645\""
	"],"
	"\"handshake_hash\": \"6ea6e01bbdf380f90104c716f7177d7400563a77"
	"4688d42fd9c96e9b3e48ff0dbf994caa99ffce72"
	"0a98390daebb0c07b062a9a5daa142a212a828a4"
	"8f2b221d"
	"\","
	"\"messages\": ["
	"{\"payload\": \"4c756477696720766f6e204d69736573\","
	"\"ciphertext\": \"ca35def5ae56cec33dc2036731ab14896bc4c75d"
	"bb07a61f879f8e3afa4c79444fa79100f1de2c2d"
	"d7079c8c51afc737ab1826a0ca307dd5d84b8bb8"
	"fa0bdced"
	"\"},"
	"{\"payload\": \"4d757272617920526f746862617264\","
	"\"ciphertext\": \"95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7c"
	"cb39ec5be34069f144808843f869ece7c4749e13"
	"40606ced667d8aba5428fb6bf9088ab6ac78533a"
	"a89cc4eeea81aa3259fabf16f35082b39bb5fd1a"
	"cf8701fd7323edb3d45cdf7a48526279459c9b40"
	"29b77d17eff25c11ecdc00"
	"\"},"
	"{\"payload\": \"462e20412e20486179656b\","
	"\"ciphertext\": \"0ece99fc4390833f748389831aad6d17d422c2b7"
	"440740bff9998c04de6ab88d3cc8700238a493ab"
	"703eaa20f0d0cda19c0a031f3f087ee8cefdd82c"
	"793074ea12018e2cfca5d0328b2f5e"
	"\"},"
	"{\"payload\": \"4361726c204d656e676572\","
	"\"ciphertext\": \"dd2961d2bd441624a5ed708986b4f32ebfc7b894"
	"8849d599c10138"
	"\"}"
	"]"
	"},"
	"{"
	"\"protocol_name\": \"Noise_IKpsk0+psk2_25519_ChaChaPoly_BLAKE2b"
	"\","
	"\"init_prologue\": \"4a6f686e2047616c74"
	"\","
	"\"init_static\": \"e61ef9919cde45dd5f82166404bd08e38bceb5df"
	"dfded0a34c8df7ed542214d1"
	"\","
	"\"init_ephemeral\": \"893e28b9dc6ca8d611ab664754b8ceb7bac51173"
	"49a4439a6b0569da977c464a"
	"\","
	"\"init_remote_static\": \"31e0303fd6418d2f8c0e78b91f22e8caed0fbe48"
	"656dcf4767e4834f701b8f62"
	"\","
	"\"init_psks\": ["
	"\"54686973206973206d7920417573747269616e20706572737065637469766521\","
	"\"4e6f6973652069732061206e6963652070726f746f636f6c20746f6f2121213f\""
	"],"
	"\"resp_prologue\": \"4a6f686e2047616c74"
	"\","
	"\"resp_static\": \"4a3acbfdb163dec651dfa3194dece676d437029c"
	"62a408b4c5ea9114246e4893"
	"\","
	"\"resp_ephemeral\": \"bbdb4cdbd309f1a1f2e1456967fe288cadd6f712"
	"d65dc7b7793d5e63da6b375b"
	"\","
	"\"resp_psks\": ["
	"\"54686973206973206d7920417573747269616e20706572737065637469766521\","
	"\"4e6f6973652069732061206e6963652070726f746f636f6c20746f6f2121213f\""
	"],"
	"\"handshake_hash\": \"e8d498622c3b4ba9ae6d0876cf5e2f6e558ad569"
	"c1984c067e4c9c37c8cdcf3a39d4f3b1772b5124"
	"dc494e5d49bc3a5b7a241ef3e634608b9d3e34ef"
	"5fe37e05"
	"\","
	"\"messages\": ["
	"{\"payload\": \"4c756477696720766f6e204d69736573\","
	"\"ciphertext\": \"ca35def5ae56cec33dc2036731ab14896bc4c75d"
	"bb07a61f879f8e3afa4c79445d049ac743047295"
	"45f8ac90509a96b799a779225df57e701b2ae0de"
	"cbea947eff356dee310b1ff21b322653507e4096"
	"b53ac61cf01597831402f7a8831a476e6b4f2e8f"
	"a3cef71693640b93f571f9e3"
	"\"},"
	"{\"payload\": \"4d757272617920526f746862617264\","
	"\"ciphertext\": \"95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7c"
	"cb39ec5be34069f144808843f4180455355930ed"
	"2f47bf488618c8fbdad6abc5fd8e5995cb41bdda"
	"2ac9a5"
	"\"},"
	"{\"payload\": \"462e20412e20486179656b\","
	"\"ciphertext\": \"f386331f0b9a3c754039d43899f3785ede86b863"
	"341ce2bb6048f5"
	"\"},"
	"{\"payload\": \"4361726c204d656e676572\","
	"\"ciphertext\": \"1f4fe1d540ca5f3e652b54bfa384c59a11ca0db3"
	"ff1ceae84db1c1"
	"\"}"
	"]"
	"}"
	"]}";

TT_CASE(noise__vectors__multi_psk_from_dissononce)
{
	int checked, total;

	checked = vectors_run(noise_extra_vectors,
	    sizeof noise_extra_vectors - 1, &total);
	TT_EQ(total, 3);
	TT_EQ(checked, 3);
}

/* Helpers for handshakes between two engines. */

/* Runs a handshake to its end; every payload must arrive intact. */
static void
drive(struct noise_handshake *ini, struct noise_handshake *res)
{
	uint8_t msg[512], got[512], pl[64];
	struct noise_handshake *snd, *rcv;
	size_t plen, len, glen;
	int i;

	for (i = 0; noise_handshake_action(ini) != NOISE_ACTION_SPLIT; i++) {
		TT_ASSERT(i < NOISE_MAX_MESSAGES);
		snd = i % 2 == 0 ? ini : res;
		rcv = i % 2 == 0 ? res : ini;
		TT_EQ(noise_handshake_action(snd), NOISE_ACTION_WRITE_MESSAGE);
		TT_EQ(noise_handshake_action(rcv), NOISE_ACTION_READ_MESSAGE);
		plen = (size_t)snprintf((char *)pl, sizeof pl,
		    "handshake payload %d", i);
		TT_OK(noise_handshake_write(snd, pl, plen, msg, sizeof msg,
		    &len));
		TT_OK(noise_handshake_read(rcv, msg, len, got, sizeof got,
		    &glen));
		TT_EQ(glen, plen);
		TT_MEMEQ(got, pl, plen);
	}
	TT_EQ(noise_handshake_action(res), NOISE_ACTION_SPLIT);
	TT_MEMEQ(noise_handshake_hash(ini), noise_handshake_hash(res),
	    NOISE_HASHLEN);
}

/* Sends text from tx to rx and checks it arrives. */
static void
transport(struct noise_cipher *tx, struct noise_cipher *rx, const char *text)
{
	uint8_t ct[256], pt[256];
	size_t len = strlen(text), clen, plen;

	TT_OK(noise_cipher_encrypt(tx, NULL, 0, (const uint8_t *)text, len,
	    ct, sizeof ct, &clen));
	TT_EQ(clen, len + NOISE_TAGLEN);
	TT_OK(noise_cipher_decrypt(rx, NULL, 0, ct, clen, pt, sizeof pt,
	    &plen));
	TT_EQ(plen, len);
	TT_MEMEQ(pt, text, len);
}

/* An NN handshake, split: i_tx/r_rx carry i->r, r_tx/i_rx r->i. */
static void
nn_session(struct noise_cipher *i_tx, struct noise_cipher *i_rx,
    struct noise_cipher *r_tx, struct noise_cipher *r_rx)
{
	struct noise_handshake ini, res;

	TT_OK(noise_handshake_init(&ini, "Noise_NN" SUITE, true, NULL, 0));
	TT_OK(noise_handshake_init(&res, "Noise_NN" SUITE, false, NULL, 0));
	drive(&ini, &res);
	TT_OK(noise_handshake_split(&ini, i_tx, i_rx));
	TT_OK(noise_handshake_split(&res, r_rx, r_tx));
}

static void
hex32(const char *hex, uint8_t out[32])
{
	TT_EQ(tt_unhex(hex, strlen(hex), out, 32), 32);
}

TT_CASE(noise__handshake__random_xx_transport_both_ways)
{
	uint8_t ipriv[32], ipub[32], rpriv[32], rpub[32];
	struct noise_handshake ini, res;
	struct noise_cipher i_tx, i_rx, r_tx, r_rx;
	int k;

	noise_keypair_generate(ipriv, ipub);
	noise_keypair_generate(rpriv, rpub);
	TT_OK(noise_handshake_init(&ini, "Noise_XX" SUITE, true,
	    (const uint8_t *)"tern", 4));
	TT_OK(noise_handshake_init(&res, "Noise_XX" SUITE, false,
	    (const uint8_t *)"tern", 4));
	TT_OK(noise_handshake_set_static(&ini, ipriv));
	TT_OK(noise_handshake_set_static(&res, rpriv));
	TT_ASSERT(noise_handshake_remote_static(&ini) == NULL);
	TT_ASSERT(noise_handshake_remote_static(&res) == NULL);
	drive(&ini, &res);
	/* XX teaches each side the other's static key. */
	TT_MEMEQ(noise_handshake_remote_static(&ini), rpub, 32);
	TT_MEMEQ(noise_handshake_remote_static(&res), ipub, 32);
	TT_OK(noise_handshake_split(&ini, &i_tx, &i_rx));
	TT_OK(noise_handshake_split(&res, &r_rx, &r_tx));
	for (k = 0; k < 4; k++) {
		transport(&i_tx, &r_rx, "from the initiator");
		transport(&r_tx, &i_rx, "from the responder");
	}
	/* Rekey on both ends of one direction keeps it working. */
	noise_cipher_rekey(&i_tx);
	noise_cipher_rekey(&r_rx);
	transport(&i_tx, &r_rx, "after rekey");
	transport(&r_tx, &i_rx, "the other way, not rekeyed");
}

TT_CASE(noise__handshake__random_ik_transport_both_ways)
{
	uint8_t ipriv[32], ipub[32], rpriv[32], rpub[32];
	struct noise_handshake ini, res;
	struct noise_cipher i_tx, i_rx, r_tx, r_rx;
	int k;

	noise_keypair_generate(ipriv, ipub);
	noise_keypair_generate(rpriv, rpub);
	TT_OK(noise_handshake_init(&ini, "Noise_IK" SUITE, true, NULL, 0));
	TT_OK(noise_handshake_init(&res, "Noise_IK" SUITE, false, NULL, 0));
	TT_OK(noise_handshake_set_static(&ini, ipriv));
	TT_OK(noise_handshake_set_remote_static(&ini, rpub));
	TT_OK(noise_handshake_set_static(&res, rpriv));
	drive(&ini, &res);
	TT_MEMEQ(noise_handshake_remote_static(&res), ipub, 32);
	TT_OK(noise_handshake_split(&ini, &i_tx, &i_rx));
	TT_OK(noise_handshake_split(&res, &r_rx, &r_tx));
	for (k = 0; k < 4; k++) {
		transport(&r_tx, &i_rx, "from the responder");
		transport(&i_tx, &r_rx, "from the initiator");
	}
}

/*
 * Every pattern and a spread of psk modifiers, between two engines with
 * random keys: this covers combinations no vector has (psk0+psk1 in one
 * message, four psks).
 */
TT_CASE(noise__handshake__every_pattern_between_engines)
{
	static const char *const patterns[] = {
		"N", "K", "X", "NN", "NK", "NX", "KN", "KK", "KX", "XN", "XK",
		"XX", "IN", "IK", "IX", "NK1", "NX1", "X1N", "X1K", "XK1",
		"X1K1", "X1X", "XX1", "X1X1", "K1N", "K1K", "KK1", "K1K1",
		"K1X", "KX1", "K1X1", "I1N", "I1K", "IK1", "I1K1", "I1X",
		"IX1", "I1X1",
		"Npsk0", "Xpsk1", "NNpsk0+psk1", "NNpsk0+psk1+psk2",
		"XXpsk0+psk1+psk2+psk3", "X1X1psk4", "IKpsk0+psk2",
		"KK1psk1+psk2",
	};
	uint8_t ipriv[32], ipub[32], rpriv[32], rpub[32], psk[32];
	struct noise_handshake ini, res;
	struct noise_cipher i_tx, i_rx, r_tx, r_rx;
	char name[NOISE_MAX_NAME + 1];
	const char *q;
	size_t i;
	int k;

	for (i = 0; i < sizeof patterns / sizeof patterns[0]; i++) {
		snprintf(name, sizeof name, "Noise_%s%s", patterns[i], SUITE);
		vector_watch(name);
		noise_keypair_generate(ipriv, ipub);
		noise_keypair_generate(rpriv, rpub);
		TT_OK(noise_handshake_init(&ini, name, true, NULL, 0));
		TT_OK(noise_handshake_init(&res, name, false, NULL, 0));
		TT_OK(noise_handshake_set_static(&ini, ipriv));
		TT_OK(noise_handshake_set_static(&res, rpriv));
		/* Pre-message statics are known in advance. */
		if (ini.pre_resp & 0x02)
			TT_OK(noise_handshake_set_remote_static(&ini, rpub));
		if (res.pre_init & 0x02)
			TT_OK(noise_handshake_set_remote_static(&res, ipub));
		/* One psk for each "psk" in the name, each different. */
		for (k = 0, q = name; (q = strstr(q, "psk")) != NULL; q++) {
			randombytes_buf(psk, sizeof psk);
			TT_OK(noise_handshake_add_psk(&ini, psk));
			TT_OK(noise_handshake_add_psk(&res, psk));
			k++;
		}
		TT_EQ(ini.npsks, k);
		drive(&ini, &res);
		/*
		 * The name's letters say who learns whose static key: N for
		 * none; one-way patterns always know the responder's.
		 */
		q = patterns[i] + 1;
		if (*q == '1')
			q++;
		if (patterns[i][0] != 'N')
			TT_MEMEQ(noise_handshake_remote_static(&res), ipub, 32);
		else
			TT_ASSERT(noise_handshake_remote_static(&res) == NULL);
		if (*q != 'N')
			TT_MEMEQ(noise_handshake_remote_static(&ini), rpub, 32);
		else
			TT_ASSERT(noise_handshake_remote_static(&ini) == NULL);
		TT_OK(noise_handshake_split(&ini, &i_tx, &i_rx));
		TT_OK(noise_handshake_split(&res, &r_rx, &r_tx));
		transport(&i_tx, &r_rx, "to the responder");
		if (!ini.one_way)
			transport(&r_tx, &i_rx, "to the initiator");
	}
	vector_watch(NULL);
}

/* Failure rules. */

/*
 * Zero and low-order public keys: X25519 with them gives all zeros, a
 * "shared" secret everyone knows.
 */
TT_CASE(noise__dh__zero_and_low_order_keys_rejected)
{
	static const char *const bad[] = {
		/* zero */
		"00000000000000000000000000000000"
		"00000000000000000000000000000000",
		/* u = 1, order 4 */
		"01000000000000000000000000000000"
		"00000000000000000000000000000000",
		/* order 8 */
		"e0eb7a7c3b41b8ae1656e3faf19fc46a"
		"da098deb9c32b1fd866205165f49b800",
		/* p - 1, order 2 */
		"ecffffffffffffffffffffffffffffff"
		"ffffffffffffffffffffffffffffff7f",
		/* p, which is zero */
		"edffffffffffffffffffffffffffffff"
		"ffffffffffffffffffffffffffffff7f",
	};
	struct noise_handshake ini, res;
	uint8_t key[32], msg[256], got[256];
	size_t i, len, glen;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		hex32(bad[i], key);

		/* A remote static known in advance: NK's first "es". */
		TT_OK(noise_handshake_init(&ini, "Noise_NK" SUITE, true, NULL,
		    0));
		TT_OK(noise_handshake_set_remote_static(&ini, key));
		TT_ERR(noise_handshake_write(&ini, NULL, 0, msg, sizeof msg,
		    &len), TERN_EDH);
		TT_EQ(noise_handshake_action(&ini), NOISE_ACTION_FAILED);

		/* A remote ephemeral read off the wire: NN's "ee" on read. */
		TT_OK(noise_handshake_init(&ini, "Noise_NN" SUITE, true, NULL,
		    0));
		TT_OK(noise_handshake_init(&res, "Noise_NN" SUITE, false, NULL,
		    0));
		TT_OK(noise_handshake_write(&ini, NULL, 0, msg, sizeof msg,
		    &len));
		TT_OK(noise_handshake_read(&res, msg, len, got, sizeof got,
		    &glen));
		TT_OK(noise_handshake_write(&res, NULL, 0, msg, sizeof msg,
		    &len));
		memcpy(msg, key, 32);
		TT_ERR(noise_handshake_read(&ini, msg, len, got, sizeof got,
		    &glen), TERN_EDH);
		TT_EQ(noise_handshake_action(&ini), NOISE_ACTION_FAILED);

		/* The same, found by the responder when it writes "ee". */
		TT_OK(noise_handshake_init(&res, "Noise_XX" SUITE, false, NULL,
		    0));
		TT_OK(noise_handshake_read(&res, key, 32, got, sizeof got,
		    &glen));
		TT_ERR(noise_handshake_write(&res, NULL, 0, msg, sizeof msg,
		    &len), TERN_EDH);
		TT_EQ(noise_handshake_action(&res), NOISE_ACTION_FAILED);
	}
}

TT_CASE(noise__handshake__oversized_message_rejected)
{
	static uint8_t big[NOISE_MAX_MSG + 1], out[NOISE_MAX_MSG + 64];
	struct noise_handshake hs;
	size_t len;

	/* Reading: one byte over the cap. */
	TT_OK(noise_handshake_init(&hs, "Noise_NN" SUITE, false, NULL, 0));
	TT_ERR(noise_handshake_read(&hs, big, sizeof big, out, sizeof out,
	    &len), TERN_ETOOBIG);
	TT_EQ(noise_handshake_action(&hs), NOISE_ACTION_FAILED);

	/* Writing: a payload that would make the message one byte over. */
	TT_OK(noise_handshake_init(&hs, "Noise_NN" SUITE, true, NULL, 0));
	TT_ERR(noise_handshake_write(&hs, big, NOISE_MAX_MSG - NOISE_DHLEN + 1,
	    out, sizeof out, &len), TERN_ETOOBIG);
	TT_EQ(noise_handshake_action(&hs), NOISE_ACTION_FAILED);

	/* Exactly at the cap is fine. */
	TT_OK(noise_handshake_init(&hs, "Noise_NN" SUITE, true, NULL, 0));
	TT_OK(noise_handshake_write(&hs, big, NOISE_MAX_MSG - NOISE_DHLEN,
	    out, sizeof out, &len));
	TT_EQ(len, NOISE_MAX_MSG);

	/* An output buffer too small for the message. */
	TT_OK(noise_handshake_init(&hs, "Noise_NN" SUITE, true, NULL, 0));
	TT_ERR(noise_handshake_write(&hs, NULL, 0, out, NOISE_DHLEN - 1,
	    &len), TERN_ETOOBIG);
	TT_EQ(noise_handshake_action(&hs), NOISE_ACTION_FAILED);

	/* A payload buffer too small for what arrived. */
	TT_OK(noise_handshake_init(&hs, "Noise_NN" SUITE, false, NULL, 0));
	TT_ERR(noise_handshake_read(&hs, big, NOISE_DHLEN + 10, out, 9,
	    &len), TERN_ETOOBIG);
	TT_EQ(noise_handshake_action(&hs), NOISE_ACTION_FAILED);
}

TT_CASE(noise__handshake__truncated_message_rejected)
{
	struct noise_handshake ini, res;
	uint8_t rpriv[32], rpub[32], msg[256], got[256];
	size_t len, glen;

	noise_keypair_generate(rpriv, rpub);

	/* Shorter than "e". */
	TT_OK(noise_handshake_init(&res, "Noise_NN" SUITE, false, NULL, 0));
	TT_ERR(noise_handshake_read(&res, msg, NOISE_DHLEN - 1, got,
	    sizeof got, &glen), TERN_ETRUNC);
	TT_EQ(noise_handshake_action(&res), NOISE_ACTION_FAILED);

	/* XX's second message cut inside the encrypted "s". */
	TT_OK(noise_handshake_init(&ini, "Noise_XX" SUITE, true, NULL, 0));
	TT_OK(noise_handshake_init(&res, "Noise_XX" SUITE, false, NULL, 0));
	TT_OK(noise_handshake_set_static(&res, rpriv));
	TT_OK(noise_handshake_write(&ini, NULL, 0, msg, sizeof msg, &len));
	TT_OK(noise_handshake_read(&res, msg, len, got, sizeof got, &glen));
	TT_OK(noise_handshake_write(&res, NULL, 0, msg, sizeof msg, &len));
	TT_EQ(len, NOISE_DHLEN + NOISE_DHLEN + 2 * NOISE_TAGLEN);
	TT_ERR(noise_handshake_read(&ini, msg, 2 * NOISE_DHLEN + NOISE_TAGLEN -
	    1, got, sizeof got, &glen), TERN_ETRUNC);
	TT_EQ(noise_handshake_action(&ini), NOISE_ACTION_FAILED);

	/* ... and cut inside the payload's tag. */
	TT_OK(noise_handshake_init(&ini, "Noise_XX" SUITE, true, NULL, 0));
	TT_OK(noise_handshake_init(&res, "Noise_XX" SUITE, false, NULL, 0));
	TT_OK(noise_handshake_set_static(&res, rpriv));
	TT_OK(noise_handshake_write(&ini, NULL, 0, msg, sizeof msg, &len));
	TT_OK(noise_handshake_read(&res, msg, len, got, sizeof got, &glen));
	TT_OK(noise_handshake_write(&res, NULL, 0, msg, sizeof msg, &len));
	TT_ERR(noise_handshake_read(&ini, msg, len - 1, got, sizeof got,
	    &glen), TERN_ETRUNC);
	TT_EQ(noise_handshake_action(&ini), NOISE_ACTION_FAILED);
}

TT_CASE(noise__handshake__tampered_message_fails_and_wipes)
{
	uint8_t ipriv[32], ipub[32], rpriv[32], rpub[32];
	struct noise_handshake ini, res;
	uint8_t msg[256], got[256];
	size_t len, glen;

	noise_keypair_generate(ipriv, ipub);
	noise_keypair_generate(rpriv, rpub);
	TT_OK(noise_handshake_init(&ini, "Noise_XX" SUITE, true, NULL, 0));
	TT_OK(noise_handshake_init(&res, "Noise_XX" SUITE, false, NULL, 0));
	TT_OK(noise_handshake_set_static(&ini, ipriv));
	TT_OK(noise_handshake_set_static(&res, rpriv));
	TT_OK(noise_handshake_write(&ini, NULL, 0, msg, sizeof msg, &len));
	TT_OK(noise_handshake_read(&res, msg, len, got, sizeof got, &glen));
	TT_OK(noise_handshake_write(&res, (const uint8_t *)"hi", 2, msg,
	    sizeof msg, &len));
	msg[len - 1] ^= 0x01;
	TT_ERR(noise_handshake_read(&ini, msg, len, got, sizeof got, &glen),
	    TERN_EDECRYPT);
	TT_EQ(glen, 0);
	TT_EQ(noise_handshake_action(&ini), NOISE_ACTION_FAILED);
	/* Nothing secret is left behind. */
	TT_ASSERT(sodium_is_zero(ini.ck, sizeof ini.ck));
	TT_ASSERT(sodium_is_zero(ini.cs.k, sizeof ini.cs.k));
	TT_ASSERT(sodium_is_zero(ini.s_priv, sizeof ini.s_priv));
	TT_ASSERT(sodium_is_zero(ini.e_priv, sizeof ini.e_priv));
	/* A failed state stays failed. */
	TT_ERR(noise_handshake_read(&ini, msg, len, got, sizeof got, &glen),
	    TERN_ESTATE);

	/* A flipped bit in the encrypted static key fails the same way. */
	TT_OK(noise_handshake_init(&ini, "Noise_XX" SUITE, true, NULL, 0));
	TT_OK(noise_handshake_init(&res, "Noise_XX" SUITE, false, NULL, 0));
	TT_OK(noise_handshake_set_static(&res, rpriv));
	TT_OK(noise_handshake_write(&ini, NULL, 0, msg, sizeof msg, &len));
	TT_OK(noise_handshake_read(&res, msg, len, got, sizeof got, &glen));
	TT_OK(noise_handshake_write(&res, NULL, 0, msg, sizeof msg, &len));
	msg[NOISE_DHLEN + 3] ^= 0x80;
	TT_ERR(noise_handshake_read(&ini, msg, len, got, sizeof got, &glen),
	    TERN_EDECRYPT);
	TT_EQ(noise_handshake_action(&ini), NOISE_ACTION_FAILED);
	TT_ASSERT(noise_handshake_remote_static(&ini) == NULL);
}

TT_CASE(noise__cipher__nonce_exhausted)
{
	struct noise_cipher c;
	uint8_t pt[4] = { 1, 2, 3, 4 }, ct[64];
	size_t len;

	memset(&c, 0, sizeof c);
	randombytes_buf(c.k, sizeof c.k);
	c.has_key = true;
	/* The last usable nonce works... */
	c.n = UINT64_MAX - 1;
	TT_OK(noise_cipher_encrypt(&c, NULL, 0, pt, sizeof pt, ct, sizeof ct,
	    &len));
	TT_ASSERT(c.n == UINT64_MAX);
	/* ...and 2^64-1 is reserved. */
	TT_ERR(noise_cipher_encrypt(&c, NULL, 0, pt, sizeof pt, ct, sizeof ct,
	    &len), TERN_ENONCE);
	TT_EQ(len, 0);
	TT_ASSERT(c.n == UINT64_MAX);
	TT_ERR(noise_cipher_decrypt(&c, NULL, 0, ct, sizeof pt + NOISE_TAGLEN,
	    pt, sizeof pt, &len), TERN_ENONCE);
	TT_ASSERT(c.n == UINT64_MAX);
}

TT_CASE(noise__transport__replay_rejected)
{
	struct noise_cipher i_tx, i_rx, r_tx, r_rx;
	uint8_t ct[64], pt[64];
	size_t clen, plen;

	nn_session(&i_tx, &i_rx, &r_tx, &r_rx);
	TT_OK(noise_cipher_encrypt(&i_tx, NULL, 0, (const uint8_t *)"once", 4,
	    ct, sizeof ct, &clen));
	TT_OK(noise_cipher_decrypt(&r_rx, NULL, 0, ct, clen, pt, sizeof pt,
	    &plen));
	TT_ASSERT(r_rx.n == 1);
	TT_ERR(noise_cipher_decrypt(&r_rx, NULL, 0, ct, clen, pt, sizeof pt,
	    &plen), TERN_EDECRYPT);
	TT_EQ(plen, 0);
	TT_ASSERT(r_rx.n == 1);
	transport(&i_tx, &r_rx, "the next one still arrives");
}

TT_CASE(noise__transport__failed_decrypt_keeps_nonce)
{
	struct noise_cipher i_tx, i_rx, r_tx, r_rx;
	uint8_t ct[64], bad[64], pt[64];
	size_t clen, plen;

	nn_session(&i_tx, &i_rx, &r_tx, &r_rx);
	TT_OK(noise_cipher_encrypt(&r_tx, (const uint8_t *)"ad", 2,
	    (const uint8_t *)"payload", 7, ct, sizeof ct, &clen));
	memcpy(bad, ct, clen);
	bad[0] ^= 0x01;
	TT_ERR(noise_cipher_decrypt(&i_rx, (const uint8_t *)"ad", 2, bad,
	    clen, pt, sizeof pt, &plen), TERN_EDECRYPT);
	TT_ASSERT(i_rx.n == 0);
	/* The wrong associated data fails too, and also costs no nonce. */
	TT_ERR(noise_cipher_decrypt(&i_rx, (const uint8_t *)"AD", 2, ct,
	    clen, pt, sizeof pt, &plen), TERN_EDECRYPT);
	TT_ASSERT(i_rx.n == 0);
	/* Shorter than a tag. */
	TT_ERR(noise_cipher_decrypt(&i_rx, NULL, 0, ct, NOISE_TAGLEN - 1, pt,
	    sizeof pt, &plen), TERN_ETRUNC);
	TT_ASSERT(i_rx.n == 0);
	/* The genuine message then decrypts, in place. */
	TT_OK(noise_cipher_decrypt(&i_rx, (const uint8_t *)"ad", 2, ct, clen,
	    ct, sizeof ct, &plen));
	TT_EQ(plen, 7);
	TT_MEMEQ(ct, "payload", 7);
	TT_ASSERT(i_rx.n == 1);
}

TT_CASE(noise__cipher__rekey_matches_spec)
{
	struct noise_cipher c;
	uint8_t key[32], zeros[32], nonce[12], out[48];

	memset(&c, 0, sizeof c);
	randombytes_buf(key, sizeof key);
	memcpy(c.k, key, sizeof key);
	c.has_key = true;
	c.n = 7;
	noise_cipher_rekey(&c);
	/* ENCRYPT(k, maxnonce, zerolen, zeros), first 32 bytes; n stays. */
	memset(zeros, 0, sizeof zeros);
	memset(nonce, 0, 4);
	memset(nonce + 4, 0xff, 8);
	crypto_aead_chacha20poly1305_ietf_encrypt(out, NULL, zeros,
	    sizeof zeros, NULL, 0, NULL, nonce, key);
	TT_MEMEQ(c.k, out, 32);
	TT_ASSERT(c.n == 7);
}

/* RFC 2104 over BLAKE2b, as Python's hmac.new(key, msg, blake2b) has it. */
TT_CASE(noise__hmac__matches_rfc2104)
{
	static const struct {
		size_t keylen;   /* key is bytes 0, 1, 2, ... */
		const char *msg; /* NULL: 300 times 'x' */
		const char *mac;
	} v[] = {
		{ 64, "tern hmac check",
		    "8623301053c83458b0a7dbc73eca055bfc6ce3dfae5fec09dd89b862"
		    "0926a87a5da5ec15dd31658dec875eb2cea64b636b93e1660ed3828a"
		    "b7f4ba998d923aac" },
		{ 200, "a key longer than the 128-byte block is hashed first",
		    "8af966f1f3ee5609af8db5536faf8af6f55f86388118e3f053c9d3cb"
		    "f3935dfbf95dc148406b8ab2b59d9d1c836b9d75eb807e9518e457c3"
		    "e79dee4b43082a63" },
		{ 128, NULL,
		    "6507c6ad41e137e578c6d754aee4591c7d2233256ec17d515479d00b"
		    "e723d299c14fd07203464892fe630673fdde817fa655ccadf0385fb2"
		    "9892e41626c52353" },
	};
	uint8_t key[200], msg[300], want[64], got[64];
	size_t i, j, mlen;

	for (j = 0; j < sizeof key; j++)
		key[j] = (uint8_t)j;
	for (i = 0; i < sizeof v / sizeof v[0]; i++) {
		if (v[i].msg != NULL) {
			mlen = strlen(v[i].msg);
			memcpy(msg, v[i].msg, mlen);
		} else {
			mlen = 300;
			memset(msg, 'x', mlen);
		}
		TT_EQ(tt_unhex(v[i].mac, strlen(v[i].mac), want, sizeof want),
		    64);
		noise_hmac(key, v[i].keylen, msg, mlen, got);
		TT_MEMEQ(got, want, 64);
	}
}

TT_CASE(noise__init__unknown_names_rejected)
{
	static const char *const names[] = {
		"Noise_XX_448_ChaChaPoly_BLAKE2b",
		"Noise_ZZ_25519_ChaChaPoly_BLAKE2b",
		"Noise_XX_25519_AESGCM_BLAKE2b",
		"Noise_XX_25519_ChaChaPoly_BLAKE2s",
		"Noise_XX_25519_ChaChaPoly_SHA256",
		"Noise_XX_25519_ChaChaPoly_BLAKE2b ",
		"Noise_XX_25519_ChaChaPoly_BLAKE2bX",
		"Noise_xx_25519_ChaChaPoly_BLAKE2b",
		"Noise__25519_ChaChaPoly_BLAKE2b",
		"Noise_XX__25519_ChaChaPoly_BLAKE2b",
		"Noise_XX_XX_25519_ChaChaPoly_BLAKE2b",
		"NoiseXX_25519_ChaChaPoly_BLAKE2b",
		"noise_XX_25519_ChaChaPoly_BLAKE2b",
		"Noise_XXfallback_25519_ChaChaPoly_BLAKE2b",
		"Noise_XXpsk_25519_ChaChaPoly_BLAKE2b",
		"Noise_XXpsk4_25519_ChaChaPoly_BLAKE2b",
		"Noise_XXpsk10_25519_ChaChaPoly_BLAKE2b",
		"Noise_NNpsk0+psk0_25519_ChaChaPoly_BLAKE2b",
		"Noise_NNpsk2+psk0_25519_ChaChaPoly_BLAKE2b",
		"Noise_NNpsk0+_25519_ChaChaPoly_BLAKE2b",
		"Noise_NNpsk0psk2_25519_ChaChaPoly_BLAKE2b",
		"Noise_X1K1psk0+psk1+psk2+psk3+psk4_25519_ChaChaPoly_BLAKE2b",
		/* 65 characters: over NOISE_MAX_NAME. */
		"Noise_XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"
		    "_25519_ChaChaPoly_BLAKE2b",
		/* exactly NOISE_MAX_NAME, but no such pattern */
		"Noise_XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"
		    "_25519_ChaChaPoly_BLAKE2b",
		"Noise_XX_25519_ChaChaPoly_BLAKE2b\n",
		"_25519_ChaChaPoly_BLAKE2b",
		"garbage",
		"",
	};
	static char longname[1000];
	struct noise_handshake hs;
	size_t i;

	for (i = 0; i < sizeof names / sizeof names[0]; i++) {
		if (noise_handshake_init(&hs, names[i], true, NULL, 0) !=
		    TERN_EPATTERN)
			tt_fail(__FILE__, __LINE__, "accepted \"%s\"",
			    names[i]);
		TT_EQ(noise_handshake_action(&hs), NOISE_ACTION_FAILED);
	}
	memset(longname, 'X', sizeof longname - 1);
	memcpy(longname, "Noise_", 6);
	TT_ERR(noise_handshake_init(&hs, longname, true, NULL, 0),
	    TERN_EPATTERN);
	TT_ERR(noise_handshake_init(&hs, NULL, true, NULL, 0), TERN_EPATTERN);
	/* The names tern speaks are accepted. */
	TT_OK(noise_handshake_init(&hs, "Noise_XX" SUITE, true, NULL, 0));
	TT_OK(noise_handshake_init(&hs, "Noise_IK" SUITE, false, NULL, 0));
}

TT_CASE(noise__write__out_of_turn_rejected)
{
	struct noise_handshake ini, res;
	struct noise_cipher a, b;
	uint8_t msg[256], got[256];
	size_t len, glen;

	/* The responder may not speak first... */
	TT_OK(noise_handshake_init(&res, "Noise_NN" SUITE, false, NULL, 0));
	TT_EQ(noise_handshake_action(&res), NOISE_ACTION_READ_MESSAGE);
	TT_ERR(noise_handshake_write(&res, NULL, 0, msg, sizeof msg, &len),
	    TERN_ESTATE);
	TT_EQ(noise_handshake_action(&res), NOISE_ACTION_FAILED);
	/* ...nor the initiator listen first. */
	TT_OK(noise_handshake_init(&ini, "Noise_NN" SUITE, true, NULL, 0));
	TT_ERR(noise_handshake_read(&ini, msg, 64, got, sizeof got, &glen),
	    TERN_ESTATE);
	TT_EQ(noise_handshake_action(&ini), NOISE_ACTION_FAILED);
	/* Writing twice in a row. */
	TT_OK(noise_handshake_init(&ini, "Noise_NN" SUITE, true, NULL, 0));
	TT_OK(noise_handshake_write(&ini, NULL, 0, msg, sizeof msg, &len));
	TT_ERR(noise_handshake_write(&ini, NULL, 0, msg, sizeof msg, &len),
	    TERN_ESTATE);
	/* Split before the end. */
	TT_OK(noise_handshake_init(&ini, "Noise_NN" SUITE, true, NULL, 0));
	TT_ERR(noise_handshake_split(&ini, &a, &b), TERN_ESTATE);
	/* Keys after the first message. */
	TT_OK(noise_handshake_init(&ini, "Noise_NN" SUITE, true, NULL, 0));
	TT_OK(noise_handshake_write(&ini, NULL, 0, msg, sizeof msg, &len));
	TT_ERR(noise_handshake_set_static(&ini, msg), TERN_ESTATE);
	/* Writing, or splitting again, once split. */
	TT_OK(noise_handshake_init(&ini, "Noise_NN" SUITE, true, NULL, 0));
	TT_OK(noise_handshake_init(&res, "Noise_NN" SUITE, false, NULL, 0));
	drive(&ini, &res);
	TT_OK(noise_handshake_split(&ini, &a, &b));
	TT_ERR(noise_handshake_write(&ini, NULL, 0, msg, sizeof msg, &len),
	    TERN_ESTATE);
	TT_OK(noise_handshake_split(&res, &a, &b));
	TT_ERR(noise_handshake_split(&res, &a, &b), TERN_ESTATE);
}

TT_CASE(noise__handshake__missing_keys_rejected)
{
	uint8_t priv[32], pub[32], msg[256], got[256], psk[32];
	struct noise_handshake ini, res;
	size_t len, glen;

	noise_keypair_generate(priv, pub);
	/* XX's third message needs the initiator's static key. */
	TT_OK(noise_handshake_init(&ini, "Noise_XX" SUITE, true, NULL, 0));
	TT_OK(noise_handshake_init(&res, "Noise_XX" SUITE, false, NULL, 0));
	TT_OK(noise_handshake_set_static(&res, priv));
	TT_OK(noise_handshake_write(&ini, NULL, 0, msg, sizeof msg, &len));
	TT_OK(noise_handshake_read(&res, msg, len, got, sizeof got, &glen));
	TT_OK(noise_handshake_write(&res, NULL, 0, msg, sizeof msg, &len));
	TT_OK(noise_handshake_read(&ini, msg, len, got, sizeof got, &glen));
	TT_ERR(noise_handshake_write(&ini, NULL, 0, msg, sizeof msg, &len),
	    TERN_EKEY);
	TT_EQ(noise_handshake_action(&ini), NOISE_ACTION_FAILED);
	/* IK's pre-message needs the responder's static key. */
	TT_OK(noise_handshake_init(&ini, "Noise_IK" SUITE, true, NULL, 0));
	TT_OK(noise_handshake_set_static(&ini, priv));
	TT_ERR(noise_handshake_write(&ini, NULL, 0, msg, sizeof msg, &len),
	    TERN_EKEY);
	/* A psk token with no psk. */
	TT_OK(noise_handshake_init(&ini, "Noise_NNpsk0" SUITE, true, NULL, 0));
	TT_ERR(noise_handshake_write(&ini, NULL, 0, msg, sizeof msg, &len),
	    TERN_EKEY);
	/* More psks than the pattern has tokens for. */
	memset(psk, 7, sizeof psk);
	TT_OK(noise_handshake_init(&ini, "Noise_NNpsk0" SUITE, true, NULL, 0));
	TT_OK(noise_handshake_add_psk(&ini, psk));
	TT_ERR(noise_handshake_add_psk(&ini, psk), TERN_EINVAL);
	TT_OK(noise_handshake_init(&ini, "Noise_NN" SUITE, true, NULL, 0));
	TT_ERR(noise_handshake_add_psk(&ini, psk), TERN_EINVAL);
}

TT_CASE(noise__split__wipes_secrets_keeps_hash)
{
	uint8_t ipriv[32], ipub[32], rpriv[32], rpub[32], psk[32];
	uint8_t h[NOISE_HASHLEN];
	struct noise_handshake ini, res;
	struct noise_cipher i_tx, i_rx, r_tx, r_rx;

	noise_keypair_generate(ipriv, ipub);
	noise_keypair_generate(rpriv, rpub);
	memset(psk, 0x42, sizeof psk);
	TT_OK(noise_handshake_init(&ini, "Noise_XXpsk3" SUITE, true, NULL, 0));
	TT_OK(noise_handshake_init(&res, "Noise_XXpsk3" SUITE, false, NULL,
	    0));
	TT_OK(noise_handshake_set_static(&ini, ipriv));
	TT_OK(noise_handshake_set_static(&res, rpriv));
	TT_OK(noise_handshake_add_psk(&ini, psk));
	TT_OK(noise_handshake_add_psk(&res, psk));
	drive(&ini, &res);
	memcpy(h, noise_handshake_hash(&ini), sizeof h);
	TT_OK(noise_handshake_split(&ini, &i_tx, &i_rx));
	TT_OK(noise_handshake_split(&res, &r_rx, &r_tx));
	TT_ASSERT(sodium_is_zero(ini.ck, sizeof ini.ck));
	TT_ASSERT(sodium_is_zero(ini.cs.k, sizeof ini.cs.k));
	TT_ASSERT(!ini.cs.has_key);
	TT_ASSERT(sodium_is_zero(ini.s_priv, sizeof ini.s_priv));
	TT_ASSERT(sodium_is_zero(ini.e_priv, sizeof ini.e_priv));
	TT_ASSERT(sodium_is_zero((const uint8_t *)ini.psks, sizeof ini.psks));
	TT_ASSERT(sodium_is_zero(res.s_priv, sizeof res.s_priv));
	TT_ASSERT(sodium_is_zero(res.e_priv, sizeof res.e_priv));
	TT_MEMEQ(noise_handshake_hash(&ini), h, sizeof h);
	TT_MEMEQ(noise_handshake_hash(&res), h, sizeof h);
	TT_MEMEQ(noise_handshake_remote_static(&ini), rpub, 32);
	TT_MEMEQ(ini.s_pub, ipub, 32);
	transport(&i_tx, &r_rx, "still works");
	transport(&r_tx, &i_rx, "both ways");
}

TT_CASE(noise__split__one_way_second_cipher_unusable)
{
	uint8_t rpriv[32], rpub[32], ct[64];
	struct noise_handshake ini, res;
	struct noise_cipher i_tx, i_rx, r_tx, r_rx;
	size_t len;

	noise_keypair_generate(rpriv, rpub);
	TT_OK(noise_handshake_init(&ini, "Noise_N" SUITE, true, NULL, 0));
	TT_OK(noise_handshake_init(&res, "Noise_N" SUITE, false, NULL, 0));
	TT_OK(noise_handshake_set_remote_static(&ini, rpub));
	TT_OK(noise_handshake_set_static(&res, rpriv));
	drive(&ini, &res);
	TT_OK(noise_handshake_split(&ini, &i_tx, &i_rx));
	TT_OK(noise_handshake_split(&res, &r_rx, &r_tx));
	transport(&i_tx, &r_rx, "one way only");
	TT_ERR(noise_cipher_encrypt(&r_tx, NULL, 0, (const uint8_t *)"no", 2,
	    ct, sizeof ct, &len), TERN_ENONCE);
	TT_ERR(noise_cipher_encrypt(&i_rx, NULL, 0, (const uint8_t *)"no", 2,
	    ct, sizeof ct, &len), TERN_ENONCE);
}
