/*
 * store_sqlite.c: the SQLite backend of the store (store_internal.h).
 *
 * Two connections per database file:
 *   wdb  read-write, used only by the writer thread (it is opened and
 *        migrated on the loop thread before that thread starts). It is the
 *        ONLY writer: SQLite 3.40 has a WAL-reset corruption bug with
 *        concurrent writers (RESEARCH.md), and a flock() on the file keeps a
 *        second ternd away too.
 *   rdb  read-only, used only by the loop thread for the synchronous
 *        lookups. Every statement is reset right after use, so it never
 *        holds a read snapshot that would stall checkpoints.
 *
 * WAL journal, synchronous=FULL (or NORMAL), foreign keys on, all SQL in
 * prepared statements (SQLITE_PREPARE_PERSISTENT) with bound parameters.
 * The single exception is the test-only max_page_count knob: PRAGMA takes
 * no parameters, so its integer is formatted into the text.
 *
 * Atomicity of one request inside a batch: requests that write more than
 * one row run inside a SAVEPOINT, so a request that fails (name taken, key
 * in use) leaves no trace while the rest of the batch commits. The hot
 * requests (enqueue, ack, last seen, expire) are written so that a failing
 * request has changed nothing without one (savepoints cost a statement
 * journal per request).
 *
 * Quota: queue_usage keeps each user's queued count and bytes, updated in
 * the same transaction as the envelope rows; the check is one conditional
 * UPDATE of one row, never a scan.
 */
#include "store_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <unistd.h>

#include <sqlite3.h>

#define SQ_APP_ID 1952805486 /* "tern" */

/*
 * Numbered migrations: migration i takes user_version from i to i + 1.
 * Never edit one that has shipped; append.
 */
static const char *const sq_migrations[] = {
	/* 1: the first schema. */
	"CREATE TABLE users("
	"  id INTEGER PRIMARY KEY,"              /* never deleted: never reused */
	"  name TEXT NOT NULL UNIQUE,"           /* reserved forever */
	"  state INTEGER NOT NULL DEFAULT 0 CHECK (state IN (0, 1, 2)),"
	"  created_ms INTEGER NOT NULL,"
	"  display_name TEXT NOT NULL DEFAULT '',"
	"  status_text TEXT NOT NULL DEFAULT '',"
	"  last_seen_privacy INTEGER NOT NULL DEFAULT 0"
	"    CHECK (last_seen_privacy IN (0, 1, 2)),"
	"  last_seen_ms INTEGER NOT NULL DEFAULT 0,"
	"  next_device_id INTEGER NOT NULL DEFAULT 1"
	");"
	"CREATE TABLE devices("
	"  user_id INTEGER NOT NULL REFERENCES users(id),"
	"  device_id INTEGER NOT NULL CHECK (device_id > 0),"
	"  pubkey BLOB NOT NULL UNIQUE CHECK (length(pubkey) = 32),"
	"  name TEXT NOT NULL,"
	"  created_ms INTEGER NOT NULL,"
	"  PRIMARY KEY (user_id, device_id)"
	") WITHOUT ROWID;"
	"CREATE TABLE invites("
	"  hash BLOB PRIMARY KEY CHECK (length(hash) = 32),"
	"  created_ms INTEGER NOT NULL,"
	"  expires_ms INTEGER NOT NULL,"
	"  used_ms INTEGER,"
	"  used_by INTEGER REFERENCES users(id)"
	") WITHOUT ROWID;"
	"CREATE TABLE contacts("
	"  user_id INTEGER NOT NULL REFERENCES users(id),"
	"  address TEXT NOT NULL,"
	"  added_ms INTEGER NOT NULL,"
	"  PRIMARY KEY (user_id, address)"
	") WITHOUT ROWID;"
	"CREATE TABLE queue_usage("
	"  user_id INTEGER PRIMARY KEY REFERENCES users(id),"
	"  queued INTEGER NOT NULL,"
	"  queued_bytes INTEGER NOT NULL"
	");"
	/*
	 * seq is AUTOINCREMENT so that it is never reused, even after the
	 * newest rows are acked and the node restarts: devices page with
	 * "seq > after_seq". The payload is the last column so that reading
	 * the metadata does not touch its overflow pages.
	 */
	"CREATE TABLE envelopes("
	"  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  rcpt_user INTEGER NOT NULL,"
	"  rcpt_device INTEGER NOT NULL,"
	"  env_id BLOB NOT NULL CHECK (length(env_id) = 16),"
	"  class INTEGER NOT NULL CHECK (class IN (1, 2, 4)),"
	"  sender_addr TEXT NOT NULL,"
	"  sender_user INTEGER,"                 /* local sender, else NULL */
	"  sender_device INTEGER NOT NULL,"
	"  sent_ms INTEGER NOT NULL,"
	"  received_ms INTEGER NOT NULL,"
	"  expires_ms INTEGER NOT NULL,"
	"  payload BLOB NOT NULL,"
	"  FOREIGN KEY (rcpt_user, rcpt_device)"
	"    REFERENCES devices(user_id, device_id)"
	");"
	"CREATE UNIQUE INDEX envelopes_by_id"
	"  ON envelopes(rcpt_user, rcpt_device, env_id);"
	/* Ends in the rowid (seq): serves "seq > ? ORDER BY seq". */
	"CREATE INDEX envelopes_by_rcpt ON envelopes(rcpt_user, rcpt_device);"
	"CREATE INDEX envelopes_by_expiry ON envelopes(expires_ms);"
	"PRAGMA application_id = 1952805486;"
	"PRAGMA user_version = 1;",

	/*
	 * 2: the devices' public end-to-end keys (SPEC.md section 12). A
	 * device's one-time prekeys hang off its key row, which hangs off the
	 * device: removing a device must remove them first, and the foreign
	 * keys make forgetting that an error rather than orphaned keys.
	 */
	"CREATE TABLE device_keys("
	"  user_id INTEGER NOT NULL,"
	"  device_id INTEGER NOT NULL,"
	"  identity_key BLOB NOT NULL CHECK (length(identity_key) = 32),"
	"  registration_id INTEGER NOT NULL,"
	"  signed_prekey_id INTEGER NOT NULL"
	"    CHECK (signed_prekey_id BETWEEN 1 AND 16777214),"
	"  signed_prekey BLOB NOT NULL CHECK (length(signed_prekey) = 32),"
	"  signature BLOB NOT NULL CHECK (length(signature) = 64),"
	"  last_resort BLOB NOT NULL CHECK (length(last_resort) = 32),"
	"  PRIMARY KEY (user_id, device_id),"
	"  FOREIGN KEY (user_id, device_id)"
	"    REFERENCES devices(user_id, device_id)"
	") WITHOUT ROWID;"
	"CREATE TABLE prekeys("
	"  user_id INTEGER NOT NULL,"
	"  device_id INTEGER NOT NULL,"
	"  prekey_id INTEGER NOT NULL CHECK (prekey_id BETWEEN 1 AND 16777214),"
	"  pubkey BLOB NOT NULL CHECK (length(pubkey) = 32),"
	"  PRIMARY KEY (user_id, device_id, prekey_id),"
	"  FOREIGN KEY (user_id, device_id)"
	"    REFERENCES device_keys(user_id, device_id)"
	") WITHOUT ROWID;"
	"PRAGMA user_version = 2;",

	/*
	 * 3: the outbound federation queue (SPEC.md 13.2). Entries have no
	 * local recipient, so they live apart from envelopes; sender_user
	 * references users, whose rows are never deleted, so an entry
	 * outlives its sender's devices (SPEC.md 6.6). seq is AUTOINCREMENT
	 * for the same reason as the envelopes': links page with "seq > ?".
	 * fed_usage keeps per-domain counts (the list of domains to connect
	 * to, without a scan) and fed_total the node-wide bound, both
	 * updated in the transaction that adds or removes the entry.
	 */
	"CREATE TABLE fed_queue("
	"  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  dest_domain TEXT NOT NULL,"
	"  env_id BLOB NOT NULL CHECK (length(env_id) = 16),"
	"  to_addr TEXT NOT NULL,"
	"  to_device INTEGER NOT NULL CHECK (to_device > 0),"
	"  class INTEGER NOT NULL CHECK (class IN (1, 2)),"
	"  sender_user INTEGER NOT NULL REFERENCES users(id),"
	"  sender_addr TEXT NOT NULL,"
	"  sender_device INTEGER NOT NULL,"
	"  sent_ms INTEGER NOT NULL,"
	"  received_ms INTEGER NOT NULL,"
	"  expires_ms INTEGER NOT NULL,"
	"  attempts INTEGER NOT NULL DEFAULT 0,"
	"  payload BLOB NOT NULL"
	");"
	"CREATE UNIQUE INDEX fed_queue_by_id"
	"  ON fed_queue(env_id, to_addr, to_device);"
	/* Serves "dest_domain = ? AND seq > ? ORDER BY seq". */
	"CREATE INDEX fed_queue_by_domain ON fed_queue(dest_domain, seq);"
	"CREATE INDEX fed_queue_by_expiry ON fed_queue(expires_ms);"
	"CREATE TABLE fed_usage("
	"  dest_domain TEXT PRIMARY KEY,"       /* only domains with entries */
	"  queued INTEGER NOT NULL,"
	"  queued_bytes INTEGER NOT NULL"
	") WITHOUT ROWID;"
	"CREATE TABLE fed_total("
	"  id INTEGER PRIMARY KEY CHECK (id = 1),"
	"  queued INTEGER NOT NULL,"
	"  queued_bytes INTEGER NOT NULL"
	");"
	"INSERT INTO fed_total(id, queued, queued_bytes) VALUES (1, 0, 0);"
	"PRAGMA user_version = 3;",
	/*
	 * 4: federation keys this node has accepted for other domains
	 * (SPEC.md 13.4), so that a restart does not forget them: at most
	 * the 8 most recently seen per domain (the writer trims).
	 */
	"CREATE TABLE peer_keys("
	"  domain TEXT NOT NULL,"
	"  key BLOB NOT NULL CHECK (length(key) = 32),"
	"  seen_ms INTEGER NOT NULL,"
	"  PRIMARY KEY (domain, key)"
	") WITHOUT ROWID;"
	"PRAGMA user_version = 4;",
	/*
	 * 5: backup relays (SPEC.md 13.5). A node relaying for another
	 * domain queues envelopes that have no local sender (sender_user
	 * NULL) and carry their origin's signature (sig), sent on as they
	 * came. SQLite cannot relax NOT NULL in place: the table is rebuilt,
	 * keeping every seq and the AUTOINCREMENT high mark, so a seq is
	 * never reused.
	 */
	"CREATE TABLE fed_queue_v5("
	"  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  dest_domain TEXT NOT NULL,"
	"  env_id BLOB NOT NULL CHECK (length(env_id) = 16),"
	"  to_addr TEXT NOT NULL,"
	"  to_device INTEGER NOT NULL CHECK (to_device > 0),"
	"  class INTEGER NOT NULL CHECK (class IN (1, 2)),"
	"  sender_user INTEGER REFERENCES users(id),"
	"  sender_addr TEXT NOT NULL,"
	"  sender_device INTEGER NOT NULL,"
	"  sent_ms INTEGER NOT NULL,"
	"  received_ms INTEGER NOT NULL,"
	"  expires_ms INTEGER NOT NULL,"
	"  attempts INTEGER NOT NULL DEFAULT 0,"
	"  payload BLOB NOT NULL,"
	"  sig BLOB CHECK (sig IS NULL OR length(sig) = 64),"
	"  CHECK (sender_user IS NOT NULL OR sig IS NOT NULL)"
	");"
	"INSERT INTO sqlite_sequence(name, seq) "
	"  SELECT 'fed_queue_v5', seq FROM sqlite_sequence "
	"  WHERE name = 'fed_queue';"
	"INSERT INTO fed_queue_v5(seq, dest_domain, env_id, to_addr, "
	"  to_device, class, sender_user, sender_addr, sender_device, sent_ms, "
	"  received_ms, expires_ms, attempts, payload) "
	"  SELECT seq, dest_domain, env_id, to_addr, to_device, class, "
	"  sender_user, sender_addr, sender_device, sent_ms, received_ms, "
	"  expires_ms, attempts, payload FROM fed_queue;"
	"DROP TABLE fed_queue;"
	"ALTER TABLE fed_queue_v5 RENAME TO fed_queue;"
	"CREATE UNIQUE INDEX fed_queue_by_id"
	"  ON fed_queue(env_id, to_addr, to_device);"
	"CREATE INDEX fed_queue_by_domain ON fed_queue(dest_domain, seq);"
	"CREATE INDEX fed_queue_by_expiry ON fed_queue(expires_ms);"
	"PRAGMA user_version = 5;",
	/*
	 * 6: envelopes rebuilt to check class with comparisons. SQLite (3.40)
	 * codes a constant IN list of three or more values as an ephemeral
	 * table that every execution builds afresh, so "class IN (1, 2, 4)"
	 * opened and closed a table on every enqueue: about a quarter of
	 * the writer's CPU per envelope (BENCHMARKS, fifth session). A list
	 * of two is coded as comparisons, so fed_queue's stays. The same
	 * columns, seqs and AUTOINCREMENT high mark are kept (see 5).
	 * test_store checks that no insert into a queue builds one again.
	 */
	"CREATE TABLE envelopes_v6("
	"  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  rcpt_user INTEGER NOT NULL,"
	"  rcpt_device INTEGER NOT NULL,"
	"  env_id BLOB NOT NULL CHECK (length(env_id) = 16),"
	"  class INTEGER NOT NULL CHECK (class = 1 OR class = 2 OR class = 4),"
	"  sender_addr TEXT NOT NULL,"
	"  sender_user INTEGER,"
	"  sender_device INTEGER NOT NULL,"
	"  sent_ms INTEGER NOT NULL,"
	"  received_ms INTEGER NOT NULL,"
	"  expires_ms INTEGER NOT NULL,"
	"  payload BLOB NOT NULL,"
	"  FOREIGN KEY (rcpt_user, rcpt_device)"
	"    REFERENCES devices(user_id, device_id)"
	");"
	"INSERT INTO sqlite_sequence(name, seq) "
	"  SELECT 'envelopes_v6', seq FROM sqlite_sequence "
	"  WHERE name = 'envelopes';"
	"INSERT INTO envelopes_v6(seq, rcpt_user, rcpt_device, env_id, class, "
	"  sender_addr, sender_user, sender_device, sent_ms, received_ms, "
	"  expires_ms, payload) "
	"  SELECT seq, rcpt_user, rcpt_device, env_id, class, sender_addr, "
	"  sender_user, sender_device, sent_ms, received_ms, expires_ms, "
	"  payload FROM envelopes;"
	"DROP TABLE envelopes;"
	"ALTER TABLE envelopes_v6 RENAME TO envelopes;"
	"CREATE UNIQUE INDEX envelopes_by_id"
	"  ON envelopes(rcpt_user, rcpt_device, env_id);"
	"CREATE INDEX envelopes_by_rcpt ON envelopes(rcpt_user, rcpt_device);"
	"CREATE INDEX envelopes_by_expiry ON envelopes(expires_ms);"
	"PRAGMA user_version = 6;",
};
#define SQ_SCHEMA_VERSION \
	((int)(sizeof(sq_migrations) / sizeof(sq_migrations[0])))

/* Statements of the writer connection. */
enum {
	W_BEGIN,
	W_COMMIT,
	W_ROLLBACK,
	W_SAVEPOINT,
	W_RELEASE,
	W_ROLLBACK_TO,
	W_INVITE_INSERT,
	W_INVITE_USE,
	W_INVITE_SET_USER,
	W_USER_BY_NAME,
	W_USER_BY_ID,
	W_USER_INSERT,
	W_USER_NEXT_DEVICE,
	W_USER_DISABLE,
	W_USER_DELETE,
	W_USAGE_INSERT,
	W_USAGE_GET,
	W_USAGE_PUT,
	W_USAGE_ADD,
	W_USAGE_SUB,
	W_USAGE_CLEAR,
	W_KEY_EXISTS,
	W_DEVICE_COUNT,
	W_DEVICE_INSERT,
	W_DEVICE_DELETE,
	W_DEVICE_DELETE_ALL,
	W_PROFILE_SET,
	W_PRIVACY_SET,
	W_LAST_SEEN,
	W_CONTACT_EXISTS,
	W_CONTACT_COUNT,
	W_CONTACT_INSERT,
	W_CONTACT_DELETE,
	W_CONTACT_DELETE_ALL,
	W_ENV_INSERT,
	W_ENV_SEQ_BY_ID,
	W_ENV_DELETE_SEQ,
	W_ENV_ACK,
	W_ENV_DELETE_DEVICE,
	W_ENV_DELETE_USER,
	W_ENV_EXPIRED,
	W_ENV_FETCH,
	W_DEVICE_EXISTS,
	W_KEYS_IDENTITY,
	W_KEYS_UPSERT,
	W_KEYS_LIST,
	W_KEYS_DELETE_DEVICE,
	W_KEYS_DELETE_USER,
	W_PREKEY_PUT,
	W_PREKEY_COUNT,
	W_PREKEY_TAKE,
	W_PREKEY_DELETE_DEVICE,
	W_PREKEY_DELETE_USER,
	W_FED_INSERT,
	W_FED_SEQ_BY_ID,
	W_FED_DELETE_SEQ,
	W_FED_REMOVE,
	W_FED_TOTAL_ADD_CHECKED,
	W_FED_TOTAL_SUB,
	W_FED_USAGE_ADD,
	W_FED_USAGE_SUB,
	W_FED_USAGE_DROP,
	W_FED_ATTEMPT,
	W_PEER_KEY_SAVE,
	W_PEER_KEY_TRIM,
	W_FED_EXPIRED,
	W_FED_FETCH,
	W_FED_DOMAINS,
	W__COUNT
};

static const char *const sq_wsql[W__COUNT] = {
	[W_BEGIN] = "BEGIN IMMEDIATE",
	[W_COMMIT] = "COMMIT",
	[W_ROLLBACK] = "ROLLBACK",
	[W_SAVEPOINT] = "SAVEPOINT req",
	[W_RELEASE] = "RELEASE req",
	[W_ROLLBACK_TO] = "ROLLBACK TO req",
	[W_INVITE_INSERT] =
	    "INSERT INTO invites(hash, created_ms, expires_ms) VALUES (?1, ?2, ?3)",
	[W_INVITE_USE] =
	    "UPDATE invites SET used_ms = ?2 "
	    "WHERE hash = ?1 AND used_ms IS NULL AND expires_ms > ?2",
	[W_INVITE_SET_USER] = "UPDATE invites SET used_by = ?2 WHERE hash = ?1",
	[W_USER_BY_NAME] = "SELECT id, state FROM users WHERE name = ?1",
	[W_USER_BY_ID] =
	    "SELECT state, next_device_id, name FROM users WHERE id = ?1",
	[W_USER_INSERT] =
	    "INSERT INTO users(name, created_ms, next_device_id) "
	    "VALUES (?1, ?2, 2)",
	[W_USER_NEXT_DEVICE] =
	    "UPDATE users SET next_device_id = next_device_id + 1 WHERE id = ?1",
	[W_USER_DISABLE] = "UPDATE users SET state = 1 WHERE id = ?1 AND state = 0",
	[W_USER_DELETE] =
	    "UPDATE users SET state = 2, display_name = '', status_text = '', "
	    "last_seen_privacy = 0, last_seen_ms = 0 WHERE id = ?1",
	[W_USAGE_INSERT] =
	    "INSERT INTO queue_usage(user_id, queued, queued_bytes) "
	    "VALUES (?1, 0, 0)",
	/* A user's usage and state, into the usage cache (sq_ucache). */
	[W_USAGE_GET] =
	    "SELECT queued, queued_bytes, "
	    "(SELECT state FROM users WHERE id = ?1) "
	    "FROM queue_usage WHERE user_id = ?1",
	[W_USAGE_PUT] =
	    "UPDATE queue_usage SET queued = ?2, queued_bytes = ?3 "
	    "WHERE user_id = ?1",
	[W_USAGE_ADD] =
	    "UPDATE queue_usage SET queued = queued + 1, "
	    "queued_bytes = queued_bytes + ?2 WHERE user_id = ?1",
	[W_USAGE_SUB] =
	    "UPDATE queue_usage SET queued = queued - ?2, "
	    "queued_bytes = queued_bytes - ?3 WHERE user_id = ?1",
	[W_USAGE_CLEAR] =
	    "UPDATE queue_usage SET queued = 0, queued_bytes = 0 "
	    "WHERE user_id = ?1",
	[W_KEY_EXISTS] = "SELECT 1 FROM devices WHERE pubkey = ?1",
	[W_DEVICE_COUNT] = "SELECT count(*) FROM devices WHERE user_id = ?1",
	[W_DEVICE_INSERT] =
	    "INSERT INTO devices(user_id, device_id, pubkey, name, created_ms) "
	    "VALUES (?1, ?2, ?3, ?4, ?5)",
	[W_DEVICE_DELETE] =
	    "DELETE FROM devices WHERE user_id = ?1 AND device_id = ?2",
	[W_DEVICE_DELETE_ALL] = "DELETE FROM devices WHERE user_id = ?1",
	[W_PROFILE_SET] =
	    "UPDATE users SET display_name = ?2, status_text = ?3 "
	    "WHERE id = ?1 AND state <> 2",
	[W_PRIVACY_SET] =
	    "UPDATE users SET last_seen_privacy = ?2 WHERE id = ?1 AND state <> 2",
	[W_LAST_SEEN] =
	    "UPDATE users SET last_seen_ms = max(last_seen_ms, ?2) "
	    "WHERE id = ?1 AND state <> 2",
	[W_CONTACT_EXISTS] =
	    "SELECT 1 FROM contacts WHERE user_id = ?1 AND address = ?2",
	[W_CONTACT_COUNT] = "SELECT count(*) FROM contacts WHERE user_id = ?1",
	[W_CONTACT_INSERT] =
	    "INSERT INTO contacts(user_id, address, added_ms) VALUES (?1, ?2, ?3)",
	[W_CONTACT_DELETE] =
	    "DELETE FROM contacts WHERE user_id = ?1 AND address = ?2",
	[W_CONTACT_DELETE_ALL] = "DELETE FROM contacts WHERE user_id = ?1",
	[W_ENV_INSERT] =
	    "INSERT INTO envelopes(rcpt_user, rcpt_device, env_id, class, "
	    "sender_addr, sender_user, sender_device, sent_ms, received_ms, "
	    "expires_ms, payload) "
	    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) "
	    "ON CONFLICT (rcpt_user, rcpt_device, env_id) DO NOTHING",
	[W_ENV_SEQ_BY_ID] =
	    "SELECT seq FROM envelopes "
	    "WHERE rcpt_user = ?1 AND rcpt_device = ?2 AND env_id = ?3",
	[W_ENV_DELETE_SEQ] = "DELETE FROM envelopes WHERE seq = ?1",
	/*
	 * An ACK looks the row up, then deletes it by seq (W_ENV_DELETE_SEQ).
	 * One DELETE ... RETURNING would do both, but SQLite (3.40) gathers a
	 * RETURNING's rows in an ephemeral table, opened and closed on every
	 * call: the two statements cost about a fifth less writer CPU per ACK
	 * (BENCHMARKS, fifth session).
	 */
	[W_ENV_ACK] =
	    "SELECT seq, length(payload) FROM envelopes "
	    "WHERE rcpt_user = ?1 AND rcpt_device = ?2 AND env_id = ?3",
	[W_ENV_DELETE_DEVICE] =
	    "DELETE FROM envelopes WHERE rcpt_user = ?1 AND rcpt_device = ?2 "
	    "RETURNING length(payload)",
	[W_ENV_DELETE_USER] = "DELETE FROM envelopes WHERE rcpt_user = ?1",
	[W_ENV_EXPIRED] =
	    "SELECT seq, rcpt_user, rcpt_device, env_id, class, sender_user, "
	    "sender_device, length(payload) FROM envelopes "
	    "WHERE expires_ms < ?1 ORDER BY expires_ms LIMIT ?2",
	[W_ENV_FETCH] =
	    "SELECT seq, env_id, class, sender_addr, sender_device, sent_ms, "
	    "received_ms, expires_ms, payload FROM envelopes "
	    "WHERE rcpt_user = ?1 AND rcpt_device = ?2 AND seq > ?3 "
	    "ORDER BY seq LIMIT ?4",
	[W_DEVICE_EXISTS] =
	    "SELECT 1 FROM devices WHERE user_id = ?1 AND device_id = ?2",
	[W_KEYS_IDENTITY] =
	    "SELECT identity_key FROM device_keys "
	    "WHERE user_id = ?1 AND device_id = ?2",
	/* An UPSERT, not REPLACE: REPLACE deletes the row first, which its
	 * prekeys' foreign key would refuse. */
	[W_KEYS_UPSERT] =
	    "INSERT INTO device_keys(user_id, device_id, identity_key, "
	    "registration_id, signed_prekey_id, signed_prekey, signature, "
	    "last_resort) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) "
	    "ON CONFLICT (user_id, device_id) DO UPDATE SET "
	    "identity_key = excluded.identity_key, "
	    "registration_id = excluded.registration_id, "
	    "signed_prekey_id = excluded.signed_prekey_id, "
	    "signed_prekey = excluded.signed_prekey, "
	    "signature = excluded.signature, "
	    "last_resort = excluded.last_resort",
	[W_KEYS_LIST] =
	    "SELECT device_id, registration_id, identity_key, signed_prekey_id, "
	    "signed_prekey, signature, last_resort FROM device_keys "
	    "WHERE user_id = ?1 AND (?2 = 0 OR device_id = ?2) "
	    "ORDER BY device_id LIMIT ?3",
	[W_KEYS_DELETE_DEVICE] =
	    "DELETE FROM device_keys WHERE user_id = ?1 AND device_id = ?2",
	[W_KEYS_DELETE_USER] = "DELETE FROM device_keys WHERE user_id = ?1",
	[W_PREKEY_PUT] =
	    "INSERT INTO prekeys(user_id, device_id, prekey_id, pubkey) "
	    "VALUES (?1, ?2, ?3, ?4) "
	    "ON CONFLICT (user_id, device_id, prekey_id) DO UPDATE SET "
	    "pubkey = excluded.pubkey",
	[W_PREKEY_COUNT] =
	    "SELECT count(*) FROM prekeys WHERE user_id = ?1 AND device_id = ?2",
	/* Lowest id first: any order would do, this one uses the index. */
	[W_PREKEY_TAKE] =
	    "DELETE FROM prekeys WHERE user_id = ?1 AND device_id = ?2 AND "
	    "prekey_id = (SELECT min(prekey_id) FROM prekeys "
	    "WHERE user_id = ?1 AND device_id = ?2) "
	    "RETURNING prekey_id, pubkey",
	[W_PREKEY_DELETE_DEVICE] =
	    "DELETE FROM prekeys WHERE user_id = ?1 AND device_id = ?2",
	[W_PREKEY_DELETE_USER] = "DELETE FROM prekeys WHERE user_id = ?1",
	[W_FED_INSERT] =
	    "INSERT INTO fed_queue(dest_domain, env_id, to_addr, to_device, "
	    "class, sender_user, sender_addr, sender_device, sent_ms, "
	    "received_ms, expires_ms, payload, sig) "
	    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) "
	    "ON CONFLICT (env_id, to_addr, to_device) DO NOTHING",
	[W_FED_SEQ_BY_ID] =
	    "SELECT seq FROM fed_queue "
	    "WHERE env_id = ?1 AND to_addr = ?2 AND to_device = ?3",
	[W_FED_DELETE_SEQ] = "DELETE FROM fed_queue WHERE seq = ?1",
	/* Then W_FED_DELETE_SEQ: no RETURNING, as for W_ENV_ACK. */
	[W_FED_REMOVE] =
	    "SELECT dest_domain, env_id, to_addr, to_device, class, "
	    "sender_user, sender_device, length(payload) FROM fed_queue "
	    "WHERE seq = ?1",
	/* The bound check and the increment in one statement. */
	[W_FED_TOTAL_ADD_CHECKED] =
	    "UPDATE fed_total SET queued = queued + 1, "
	    "queued_bytes = queued_bytes + ?1 "
	    "WHERE id = 1 AND queued < ?2 AND queued_bytes + ?1 <= ?3",
	[W_FED_TOTAL_SUB] =
	    "UPDATE fed_total SET queued = queued - 1, "
	    "queued_bytes = queued_bytes - ?1 WHERE id = 1",
	[W_FED_USAGE_ADD] =
	    "INSERT INTO fed_usage(dest_domain, queued, queued_bytes) "
	    "VALUES (?1, 1, ?2) ON CONFLICT (dest_domain) DO UPDATE SET "
	    "queued = queued + 1, queued_bytes = queued_bytes + ?2",
	[W_FED_USAGE_SUB] =
	    "UPDATE fed_usage SET queued = queued - 1, "
	    "queued_bytes = queued_bytes - ?2 WHERE dest_domain = ?1",
	[W_FED_USAGE_DROP] =
	    "DELETE FROM fed_usage WHERE dest_domain = ?1 AND queued <= 0",
	[W_PEER_KEY_SAVE] =
	    "INSERT INTO peer_keys(domain, key, seen_ms) VALUES (?1, ?2, ?3) "
	    "ON CONFLICT(domain, key) DO UPDATE SET seen_ms = excluded.seen_ms",
	[W_PEER_KEY_TRIM] =
	    "DELETE FROM peer_keys WHERE domain = ?1 AND key NOT IN "
	    "(SELECT key FROM peer_keys WHERE domain = ?1 "
	    "ORDER BY seen_ms DESC LIMIT 8)",
	[W_FED_ATTEMPT] =
	    "UPDATE fed_queue SET attempts = attempts + 1 WHERE seq = ?1 "
	    "RETURNING attempts",
	[W_FED_EXPIRED] =
	    "SELECT seq FROM fed_queue WHERE expires_ms < ?1 "
	    "ORDER BY expires_ms LIMIT ?2",
	[W_FED_FETCH] =
	    "SELECT seq, env_id, to_addr, to_device, class, sender_user, "
	    "sender_addr, sender_device, sent_ms, received_ms, expires_ms, "
	    "attempts, payload, sig FROM fed_queue "
	    "WHERE dest_domain = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
	[W_FED_DOMAINS] =
	    "SELECT dest_domain, queued, queued_bytes FROM fed_usage "
	    "WHERE dest_domain > ?1 ORDER BY dest_domain LIMIT ?2",
};

/* Statements of the read-only connection. */
enum {
	R_USER_BY_NAME,
	R_USER_LIST,
	R_DEVICE_BY_NAME,
	R_DEVICE_BY_KEY,
	R_DEVICE_LIST,
	R_USAGE,
	R_PROFILE,
	R_CONTACTS,
	R_CONTACT_HAS,
	R_STATS_USERS,
	R_STATS_DEVICES,
	R_STATS_QUEUE,
	R_KEYS_COUNT,
	R_STATS_FED,
	R_PEER_KEYS,
	R__COUNT
};

#define SQ_USER_COLS \
	"SELECT u.id, u.name, u.state, u.created_ms, " \
	"(SELECT count(*) FROM devices d WHERE d.user_id = u.id), " \
	"coalesce(q.queued, 0), coalesce(q.queued_bytes, 0) " \
	"FROM users u LEFT JOIN queue_usage q ON q.user_id = u.id "

static const char *const sq_rsql[R__COUNT] = {
	[R_USER_BY_NAME] = SQ_USER_COLS "WHERE u.name = ?1",
	[R_USER_LIST] = SQ_USER_COLS "ORDER BY u.id",
	[R_DEVICE_BY_NAME] =
	    "SELECT d.pubkey, u.state FROM users u "
	    "JOIN devices d ON d.user_id = u.id "
	    "WHERE u.name = ?1 AND d.device_id = ?2",
	[R_DEVICE_BY_KEY] =
	    "SELECT d.user_id, d.device_id, d.pubkey, u.name, d.name, "
	    "d.created_ms, u.state FROM devices d "
	    "JOIN users u ON u.id = d.user_id WHERE d.pubkey = ?1",
	[R_DEVICE_LIST] =
	    "SELECT d.user_id, d.device_id, d.pubkey, u.name, d.name, "
	    "d.created_ms FROM devices d JOIN users u ON u.id = d.user_id "
	    "WHERE d.user_id = ?1 ORDER BY d.device_id",
	[R_USAGE] =
	    "SELECT queued, queued_bytes FROM queue_usage WHERE user_id = ?1",
	[R_PROFILE] =
	    "SELECT display_name, status_text, last_seen_privacy, last_seen_ms "
	    "FROM users WHERE id = ?1 AND state <> 2",
	[R_CONTACTS] =
	    "SELECT address FROM contacts WHERE user_id = ?1 ORDER BY address",
	[R_CONTACT_HAS] =
	    "SELECT 1 FROM contacts WHERE user_id = ?1 AND address = ?2",
	[R_STATS_USERS] = "SELECT count(*) FROM users WHERE state <> 2",
	[R_STATS_DEVICES] = "SELECT count(*) FROM devices",
	[R_STATS_QUEUE] =
	    "SELECT coalesce(sum(queued), 0), coalesce(sum(queued_bytes), 0) "
	    "FROM queue_usage",
	[R_KEYS_COUNT] =
	    "SELECT k.signed_prekey_id, (SELECT count(*) FROM prekeys p "
	    "WHERE p.user_id = ?1 AND p.device_id = ?2) FROM device_keys k "
	    "WHERE k.user_id = ?1 AND k.device_id = ?2",
	[R_STATS_FED] = "SELECT queued, queued_bytes FROM fed_total WHERE id = 1",
	[R_PEER_KEYS] = "SELECT key FROM peer_keys WHERE domain = ?1 "
	    "ORDER BY seen_ms DESC LIMIT ?2",
};

/* One row picked by an expiry pass. */
struct sq_expired {
	int64_t seq;
	int64_t rcpt_user;
	uint32_t rcpt_device;
	uint8_t env_id[STORE_ENV_ID_LEN];
	uint8_t cls;
	int64_t sender_user;                /* 0: remote sender */
	uint32_t sender_device;
	int64_t len;                        /* payload bytes */
};

/*
 * The queue usage of the users the open transaction has enqueued to:
 * read once, checked against the quota and counted here, written back
 * once per user before the commit. An UPDATE for every envelope cost a
 * tenth of the writer's CPU per envelope (BENCHMARKS, fifth session).
 *
 * Only sq_enqueue adds entries; sq_usage_add and sq_usage_sub count into
 * an entry when there is one, else update the row. It never outlives a
 * transaction: written back before COMMIT and before any request that
 * runs in a savepoint (a rollback to it must not leave counts here that
 * the database no longer has), dropped at BEGIN and ROLLBACK. Users'
 * states change only in savepoint requests, so an entry's is current.
 */
#define SQ_UC_SLOTS 256u                    /* open addressing */
#define SQ_UC_MAX 192u                      /* then written back */

struct sq_uc_ent {
	int64_t user;                       /* 0: a free slot */
	int64_t queued, bytes;
	int state;                          /* users.state; -1: no user row */
	int dirty;                          /* differs from the row */
};

struct sq_ucache {
	struct sq_uc_ent e[SQ_UC_SLOTS];
	uint16_t used[SQ_UC_MAX];           /* slots in use */
	uint32_t n;
};

struct store_backend {
	sqlite3 *wdb;                       /* writer connection */
	sqlite3 *rdb;                       /* read-only connection */
	sqlite3_stmt *w[W__COUNT];          /* wdb's statements */
	sqlite3_stmt *r[R__COUNT];          /* rdb's statements */
	int lock_fd;                        /* flock'd: one store per file */
	struct store_limits lim;
	struct sq_expired *expired;         /* expire_max + 1 rows */
	uint8_t notice[STORE_NOTICE_HDR_LEN + 256]; /* notice being built */
	_Atomic uint64_t wmem;              /* wdb's memory after the last
	                                       commit, for sq_stats */
	struct sq_ucache uc;                /* the writer's usage cache */
};

/* --- Helpers ---------------------------------------------------------------- */

/* sq_reset makes a statement ready for its next use. */
static void
sq_reset(sqlite3_stmt *st)
{
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
}

/* sq_run steps a statement whose rows are not needed: SQLITE_OK or error. */
static int
sq_run(sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);

	sq_reset(st);
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

/*
 * sq_fatal maps an error that ends a batch (or a lookup) to a tern code:
 * storage trouble is TERN_EDISK so that callers know to retry later.
 */
static int
sq_fatal(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_FULL:
	case SQLITE_IOERR:
	case SQLITE_CANTOPEN:
		return TERN_EDISK;
	case SQLITE_NOMEM:
		return TERN_ENOMEM;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return TERN_EBUSY;
	default:
		return TERN_EDB;
	}
}

/* sq_constraint maps a constraint failure (request-level) to a tern code. */
static int
sq_constraint(int rc)
{
	switch (rc) {
	case SQLITE_CONSTRAINT_FOREIGNKEY:
		return TERN_ENOUSER;
	case SQLITE_CONSTRAINT_UNIQUE:
	case SQLITE_CONSTRAINT_PRIMARYKEY:
		return TERN_EEXIST;
	default:
		return TERN_EINVAL;
	}
}

static int
sq_is_constraint(int rc)
{
	return (rc & 0xff) == SQLITE_CONSTRAINT;
}

static void
sq_bind_text(sqlite3_stmt *st, int i, const char *str)
{
	sqlite3_bind_text(st, i, str, -1, SQLITE_STATIC);
}

static void
sq_bind_blob(sqlite3_stmt *st, int i, const void *p, size_t n)
{
	static const uint8_t empty[1];

	/* A NULL pointer would bind SQL NULL; an empty payload is a blob. */
	sqlite3_bind_blob(st, i, n != 0 ? p : empty, (int)n, SQLITE_STATIC);
}

/* sq_i64: v as SQLite holds it (clamped to INT64_MAX). */
static int64_t
sq_i64(uint64_t v)
{
	return v > INT64_MAX ? INT64_MAX : (int64_t)v;
}

static void
sq_bind_u64(sqlite3_stmt *st, int i, uint64_t v)
{
	sqlite3_bind_int64(st, i, sq_i64(v));
}

/* sq_text copies a text column into dst[cap], always NUL-terminated. */
static void
sq_text(char *dst, size_t cap, sqlite3_stmt *st, int col)
{
	const unsigned char *t = sqlite3_column_text(st, col);
	size_t n = (size_t)sqlite3_column_bytes(st, col);

	if (t == NULL)
		n = 0;
	if (n >= cap)
		n = cap - 1;
	if (n > 0)
		memcpy(dst, t, n);
	dst[n] = '\0';
}

/* sq_key copies a 32-byte blob column (checked by the schema). */
static void
sq_key(uint8_t dst[STORE_KEY_LEN], sqlite3_stmt *st, int col)
{
	const void *p = sqlite3_column_blob(st, col);

	memset(dst, 0, STORE_KEY_LEN);
	if (p != NULL && sqlite3_column_bytes(st, col) == STORE_KEY_LEN)
		memcpy(dst, p, STORE_KEY_LEN);
}

/*
 * sq_script runs a fixed, multi-statement SQL text (a migration), one
 * prepared statement at a time. Returns an SQLite code.
 */
static int
sq_script(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st;
	const char *tail = sql;
	int rc = SQLITE_OK;

	while (rc == SQLITE_OK && *tail != '\0') {
		rc = sqlite3_prepare_v3(db, tail, -1, 0, &st, &tail);
		if (rc != SQLITE_OK || st == NULL)
			break;
		rc = sqlite3_step(st);
		if (rc == SQLITE_DONE || rc == SQLITE_ROW)
			rc = SQLITE_OK;
		sqlite3_finalize(st);
	}
	return rc;
}

/* sq_query_int runs a one-row, one-integer statement (a pragma). */
static int
sq_query_int(sqlite3 *db, const char *sql, int64_t *out)
{
	sqlite3_stmt *st;
	int rc;

	rc = sqlite3_prepare_v3(db, sql, -1, 0, &st, NULL);
	if (rc != SQLITE_OK)
		return rc;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*out = sqlite3_column_int64(st, 0);
		rc = SQLITE_OK;
	} else if (rc == SQLITE_DONE) {
		rc = SQLITE_ERROR;
	}
	sqlite3_finalize(st);
	return rc;
}

/* sq_query_text runs a one-row, one-text-column statement (a pragma). */
static int
sq_query_text(sqlite3 *db, const char *sql, char *out, size_t cap)
{
	sqlite3_stmt *st;
	int rc;

	rc = sqlite3_prepare_v3(db, sql, -1, 0, &st, NULL);
	if (rc != SQLITE_OK)
		return rc;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		sq_text(out, cap, st, 0);
		rc = SQLITE_OK;
	} else if (rc == SQLITE_DONE) {
		rc = SQLITE_ERROR;
	}
	sqlite3_finalize(st);
	return rc;
}

/* sq_open_map turns an error from opening/migrating into a tern code. */
static int
sq_open_map(int rc)
{
	if ((rc & 0xff) == SQLITE_NOTADB)
		return TERN_ECONFIG;
	return sq_fatal(rc);
}

/*
 * sq_migrate brings the schema to SQ_SCHEMA_VERSION in one transaction.
 * Refuses databases that are not tern's (TERN_ECONFIG) or newer than this
 * build (TERN_EVERSION).
 */
static int
sq_migrate(sqlite3 *db)
{
	/* Zeroed: gcc -O3 cannot see that sq_query_int sets them on 0. */
	int64_t version = 0, app_id = 0, objects = 0;
	int rc, err;

	rc = sq_script(db, "BEGIN IMMEDIATE");
	if (rc != SQLITE_OK)
		return sq_open_map(rc);
	if ((rc = sq_query_int(db, "PRAGMA user_version", &version)) != 0 ||
	    (rc = sq_query_int(db, "PRAGMA application_id", &app_id)) != 0 ||
	    (rc = sq_query_int(db, "SELECT count(*) FROM sqlite_schema",
	    &objects)) != 0) {
		err = sq_open_map(rc);
		goto fail;
	}
	if (version == 0 ? objects != 0 : app_id != SQ_APP_ID) {
		err = TERN_ECONFIG;
		goto fail;
	}
	if (version > SQ_SCHEMA_VERSION) {
		err = TERN_EVERSION;
		goto fail;
	}
	for (; version < SQ_SCHEMA_VERSION; version++) {
		rc = sq_script(db, sq_migrations[version]);
		if (rc != SQLITE_OK) {
			err = sq_open_map(rc);
			goto fail;
		}
	}
	rc = sq_script(db, "COMMIT");
	if (rc != SQLITE_OK) {
		err = sq_open_map(rc);
		goto fail;
	}
	return 0;
fail:
	if (!sqlite3_get_autocommit(db))
		sq_script(db, "ROLLBACK");
	return err;
}

/* sq_setup_writer applies the writer connection's settings. */
static int
sq_setup_writer(sqlite3 *db, const struct store_limits *lim)
{
	char mode[16];
	int rc;

	sqlite3_extended_result_codes(db, 1);
	sqlite3_busy_timeout(db, (int)lim->busy_timeout_ms);
	rc = sq_query_text(db, "PRAGMA journal_mode = WAL", mode, sizeof(mode));
	if (rc != SQLITE_OK)
		return sq_open_map(rc);
	if (strcmp(mode, "wal") != 0)
		return TERN_EDB;
	/*
	 * FULL: every commit is fsynced. NORMAL in WAL survives a process
	 * crash but may lose the last commits on power loss.
	 */
	rc = sq_script(db, lim->durability == STORE_DURABILITY_FULL ?
	    "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL");
	if (rc == SQLITE_OK)
		rc = sq_script(db, "PRAGMA foreign_keys = ON");
	/*
	 * Zero deleted rows inside b-tree pages (no extra I/O): sender
	 * addresses of delivered envelopes should not linger in free space.
	 */
	if (rc == SQLITE_OK)
		rc = sq_script(db, "PRAGMA secure_delete = FAST");
	/* Keep the WAL file from staying huge after a burst. */
	if (rc == SQLITE_OK)
		rc = sq_script(db, "PRAGMA journal_size_limit = 67108864");
	/*
	 * Checkpoint every 4,000 pages (16 MiB of WAL) rather than SQLite's
	 * 1,000: the queue's index pages are rewritten in every batch, and a
	 * checkpoint copies each page once however often it changed since
	 * the last. Measured (BENCHMARKS, fifth session): a commit of 2,048
	 * envelopes 6.4 ms on average against 8.6, the longest 22 ms against
	 * 17; 16,000 pages saved little more and made the longest 40 ms.
	 */
	if (rc == SQLITE_OK)
		rc = sq_script(db, "PRAGMA wal_autocheckpoint = 4000");
	if (rc == SQLITE_OK)
		rc = sq_script(db, "PRAGMA trusted_schema = OFF");
	/*
	 * 32 MiB of page cache for the writer (the default is 2 MiB): the
	 * envelope id index takes random inserts, and every page it misses is
	 * a pread, expensive on a VM. Measured: about 10% more envelopes/s.
	 */
	if (rc == SQLITE_OK)
		rc = sq_script(db, "PRAGMA cache_size = -32768");
	if (rc == SQLITE_OK && lim->max_page_count != 0) {
		/*
		 * Test-only knob. PRAGMA values cannot be bound, so this one
		 * statement carries its (integer, never caller text) value.
		 */
		char sql[64];
		snprintf(sql, sizeof(sql), "PRAGMA max_page_count = %u",
		    (unsigned)lim->max_page_count);
		rc = sq_script(db, sql);
	}
	return rc == SQLITE_OK ? 0 : sq_open_map(rc);
}

/* sq_prepare_all prepares n statements of db, persistent. */
static int
sq_prepare_all(sqlite3 *db, const char *const *sql, sqlite3_stmt **st,
    int n)
{
	int i, rc;

	for (i = 0; i < n; i++) {
		rc = sqlite3_prepare_v3(db, sql[i], -1, SQLITE_PREPARE_PERSISTENT,
		    &st[i], NULL);
		if (rc != SQLITE_OK)
			return sq_open_map(rc);
	}
	return 0;
}

static void
sq_finalize_all(sqlite3_stmt **st, int n)
{
	int i;

	for (i = 0; i < n; i++) {
		sqlite3_finalize(st[i]);
		st[i] = NULL;
	}
}

static int
sq_path_exists(const char *path, const char *suffix)
{
	char p[4096];

	if ((size_t)snprintf(p, sizeof(p), "%s%s", path, suffix) >= sizeof(p))
		return 1; /* too long to check: refuse rather than guess */
	return access(p, F_OK) == 0 || errno != ENOENT;
}

/* --- Lifecycle ------------------------------------------------------------ */

static int
sq_create(const char *path)
{
	sqlite3 *db = NULL;
	char mode[16];
	int fd, rc;

	/*
	 * A stale -wal next to a new, empty file would be replayed into it:
	 * refuse those too.
	 */
	if (sq_path_exists(path, "-wal") || sq_path_exists(path, "-shm"))
		return TERN_EEXIST;
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return errno == EEXIST ? TERN_EEXIST : TERN_EIO;
	close(fd);

	rc = sqlite3_open_v2(path, &db,
	    SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		rc = sq_open_map(rc);
		goto fail;
	}
	sqlite3_extended_result_codes(db, 1);
	rc = sq_query_text(db, "PRAGMA journal_mode = WAL", mode, sizeof(mode));
	if (rc != SQLITE_OK) {
		rc = sq_open_map(rc);
		goto fail;
	}
	rc = sq_script(db, "PRAGMA synchronous = FULL");
	if (rc != SQLITE_OK) {
		rc = sq_open_map(rc);
		goto fail;
	}
	rc = sq_migrate(db);
	if (rc != 0)
		goto fail;
	rc = sqlite3_close(db) == SQLITE_OK ? 0 : TERN_EDB;
	db = NULL;
	if (rc != 0)
		goto fail;
	return 0;
fail:
	sqlite3_close_v2(db);
	unlink(path);
	return rc;
}

static void
sq_close_reader(struct store_backend *be)
{
	sq_finalize_all(be->r, R__COUNT);
	sqlite3_close_v2(be->rdb);
	be->rdb = NULL;
}

static void
sq_close(struct store_backend *be)
{
	if (be == NULL)
		return;
	sq_close_reader(be);
	sq_finalize_all(be->w, W__COUNT);
	/* The last connection: checkpoints and removes the WAL. */
	sqlite3_close_v2(be->wdb);
	/* Only now: closing it earlier could drop SQLite's POSIX locks. */
	if (be->lock_fd >= 0)
		close(be->lock_fd);
	free(be->expired);
	free(be);
}

static int
sq_open(struct store_backend **out, const char *path,
    const struct store_limits *lim)
{
	struct store_backend *be;
	int rc;

	*out = NULL;
	be = calloc(1, sizeof(*be));
	if (be == NULL)
		return TERN_ENOMEM;
	be->lim = *lim;
	be->lock_fd = -1;
	be->expired = calloc((size_t)lim->expire_max + 1, sizeof(*be->expired));
	if (be->expired == NULL) {
		rc = TERN_ENOMEM;
		goto fail;
	}

	be->lock_fd = open(path, O_RDONLY | O_CLOEXEC);
	if (be->lock_fd < 0) {
		rc = errno == ENOENT ? TERN_ENOTFOUND : TERN_EIO;
		goto fail;
	}
	if (flock(be->lock_fd, LOCK_EX | LOCK_NB) != 0) {
		rc = errno == EWOULDBLOCK ? TERN_EBUSY : TERN_EIO;
		goto fail;
	}

	/* Each connection is used by one thread: no per-connection mutex
	 * (NOMUTEX) and no global memory statistics, whose mutex the
	 * writer and the loop thread would otherwise fight over. This fails
	 * harmlessly if SQLite was initialised already. */
	(void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
	rc = sqlite3_open_v2(path, &be->wdb,
	    SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		rc = sq_open_map(rc);
		goto fail;
	}
	if ((rc = sq_setup_writer(be->wdb, lim)) != 0 ||
	    (rc = sq_migrate(be->wdb)) != 0 ||
	    (rc = sq_prepare_all(be->wdb, sq_wsql, be->w, W__COUNT)) != 0)
		goto fail;

	/* Opened after the writer made the file WAL (the -shm exists). */
	rc = sqlite3_open_v2(path, &be->rdb,
	    SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		rc = sq_open_map(rc);
		goto fail;
	}
	sqlite3_extended_result_codes(be->rdb, 1);
	/* Short: this blocks the loop thread. WAL readers rarely wait. */
	sqlite3_busy_timeout(be->rdb, 100);
	rc = sq_prepare_all(be->rdb, sq_rsql, be->r, R__COUNT);
	if (rc != 0)
		goto fail;
	*out = be;
	return 0;
fail:
	sq_close(be);
	return rc;
}

/* --- The usage cache (struct sq_ucache) ------------------------------ */

static uint32_t
uc_slot(int64_t user)
{
	return (uint32_t)(((uint64_t)user * 0x9E3779B97F4A7C15ull) >> 32) &
	    (SQ_UC_SLOTS - 1);
}

/* uc_find: user's entry, or NULL. */
static struct sq_uc_ent *
uc_find(struct sq_ucache *c, int64_t user)
{
	uint32_t i = uc_slot(user), k;

	for (k = 0; k < SQ_UC_SLOTS; k++, i = (i + 1) & (SQ_UC_SLOTS - 1)) {
		if (c->e[i].user == user)
			return &c->e[i];
		if (c->e[i].user == 0)
			return NULL;
	}
	return NULL;
}

/* uc_drop forgets every entry, written back or not. */
static void
uc_drop(struct sq_ucache *c)
{
	for (uint32_t i = 0; i < c->n; i++)
		c->e[c->used[i]].user = 0;
	c->n = 0;
}

/* uc_flush writes back what changed, then empties the cache. On an error
 * it keeps the entries: the batch fails and ROLLBACK drops them. */
static int
uc_flush(struct store_backend *be)
{
	struct sq_ucache *c = &be->uc;
	sqlite3_stmt *st = be->w[W_USAGE_PUT];
	int rc;

	for (uint32_t i = 0; i < c->n; i++) {
		struct sq_uc_ent *u = &c->e[c->used[i]];

		if (!u->dirty)
			continue;
		sqlite3_bind_int64(st, 1, u->user);
		sqlite3_bind_int64(st, 2, u->queued);
		sqlite3_bind_int64(st, 3, u->bytes);
		if ((rc = sq_run(st)) != SQLITE_OK)
			return rc;
		u->dirty = 0;
	}
	uc_drop(c);
	return SQLITE_OK;
}

/*
 * uc_get: user's entry, read from the database on first use in the
 * transaction. *out is NULL when the user has no usage row (the enqueue is
 * refused, as the row's UPDATE used to change nothing).
 */
static int
uc_get(struct store_backend *be, int64_t user, struct sq_uc_ent **out)
{
	struct sq_ucache *c = &be->uc;
	sqlite3_stmt *st;
	struct sq_uc_ent *u;
	uint32_t i;
	int rc;

	*out = NULL;
	if ((u = uc_find(c, user)) != NULL) {
		*out = u;
		return SQLITE_OK;
	}
	if (c->n == SQ_UC_MAX && (rc = uc_flush(be)) != SQLITE_OK)
		return rc;
	st = be->w[W_USAGE_GET];
	sqlite3_bind_int64(st, 1, user);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		for (i = uc_slot(user); c->e[i].user != 0;
		    i = (i + 1) & (SQ_UC_SLOTS - 1))
			;
		u = &c->e[i];
		u->user = user;
		u->queued = sqlite3_column_int64(st, 0);
		u->bytes = sqlite3_column_int64(st, 1);
		u->state = sqlite3_column_type(st, 2) == SQLITE_NULL ? -1 :
		    sqlite3_column_int(st, 2);
		u->dirty = 0;
		c->used[c->n++] = (uint16_t)i;
		*out = u;
	}
	sq_reset(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* --- Writer: transactions --------------------------------------------------- */

static int
sq_begin(struct store_backend *be)
{
	int rc;

	/*
	 * A ROLLBACK that failed after an I/O error could leave a transaction
	 * open; without this every later batch would fail too.
	 */
	if (!sqlite3_get_autocommit(be->wdb))
		(void)sq_run(be->w[W_ROLLBACK]);
	uc_drop(&be->uc);
	rc = sq_run(be->w[W_BEGIN]);

	return rc == SQLITE_OK ? 0 : sq_fatal(rc);
}

/* sq_db_memory: what one connection holds (page cache, prepared
 * statements, schema). Only its own thread may ask: NOMUTEX. Global
 * memory statistics are off (sq_open), so this is the way to know. */
static uint64_t
sq_db_memory(sqlite3 *db)
{
	static const int ops[] = {SQLITE_DBSTATUS_CACHE_USED,
	    SQLITE_DBSTATUS_STMT_USED, SQLITE_DBSTATUS_SCHEMA_USED};
	uint64_t sum = 0;
	int cur, hi;

	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
		if (sqlite3_db_status(db, ops[i], &cur, &hi, 0) == SQLITE_OK &&
		    cur > 0)
			sum += (uint64_t)cur;
	return sum;
}

static int
sq_commit(struct store_backend *be)
{
	int rc = uc_flush(be);

	if (rc == SQLITE_OK)
		rc = sq_run(be->w[W_COMMIT]);

	atomic_store_explicit(&be->wmem, sq_db_memory(be->wdb),
	    memory_order_relaxed);
	return rc == SQLITE_OK ? 0 : sq_fatal(rc);
}

static void
sq_rollback(struct store_backend *be)
{
	/* After SQLITE_FULL or an I/O error SQLite may have rolled back. */
	if (!sqlite3_get_autocommit(be->wdb))
		(void)sq_run(be->w[W_ROLLBACK]);
	uc_drop(&be->uc);
}

/* --- Writer: requests ------------------------------------------------------ */

/*
 * Request bodies return SQLITE_OK when the request is settled (its
 * outcome in req->status) or the SQLite error that stopped it. The caller
 * (sq_exec) turns a constraint error into the request's status and any
 * other error into a batch failure.
 */
typedef int (*sq_body)(struct store_backend *be, struct store_req *req);

/*
 * sq_user_state reads a user's state, next device id and name (name may be
 * NULL). Returns SQLITE_ROW if found, SQLITE_DONE if not, or an error.
 */
static int
sq_user_state(struct store_backend *be, int64_t user_id, int *state,
    int64_t *next_dev, char *name, size_t name_cap)
{
	sqlite3_stmt *st = be->w[W_USER_BY_ID];
	int rc;

	sqlite3_bind_int64(st, 1, user_id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*state = sqlite3_column_int(st, 0);
		if (next_dev != NULL)
			*next_dev = sqlite3_column_int64(st, 1);
		if (name != NULL)
			sq_text(name, name_cap, st, 2);
	}
	sq_reset(st);
	return rc;
}

/* sq_user_by_name: SQLITE_ROW with id and state, SQLITE_DONE, or error. */
static int
sq_user_by_name(struct store_backend *be, const char *name, int64_t *id,
    int *state)
{
	sqlite3_stmt *st = be->w[W_USER_BY_NAME];
	int rc;

	sq_bind_text(st, 1, name);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*id = sqlite3_column_int64(st, 0);
		*state = sqlite3_column_int(st, 1);
	}
	sq_reset(st);
	return rc;
}

/* sq_exists runs a bound "SELECT 1 ...": SQLITE_OK and *found, or error. */
static int
sq_exists(sqlite3_stmt *st, int *found)
{
	int rc = sqlite3_step(st);

	*found = 0;
	sq_reset(st);
	if (rc == SQLITE_ROW || rc == SQLITE_DONE) {
		*found = rc == SQLITE_ROW;
		return SQLITE_OK;
	}
	return rc;
}

/* sq_count runs a "SELECT count(*) ..." already bound. */
static int
sq_count(sqlite3_stmt *st, int64_t *n)
{
	int rc = sqlite3_step(st);

	*n = 0;
	if (rc == SQLITE_ROW) {
		*n = sqlite3_column_int64(st, 0);
		rc = SQLITE_OK;
	}
	sq_reset(st);
	return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* sq_usage_add counts one envelope of bytes more for user_id (no quota). */
static int
sq_usage_add(struct store_backend *be, int64_t user_id, int64_t bytes)
{
	struct sq_uc_ent *u = uc_find(&be->uc, user_id);
	sqlite3_stmt *st = be->w[W_USAGE_ADD];

	if (u != NULL) {
		u->queued++;
		u->bytes += bytes;
		u->dirty = 1;
		return SQLITE_OK;
	}
	sqlite3_bind_int64(st, 1, user_id);
	sqlite3_bind_int64(st, 2, bytes);
	return sq_run(st);
}

static int
sq_usage_sub(struct store_backend *be, int64_t user_id, int64_t n,
    int64_t bytes)
{
	struct sq_uc_ent *u = uc_find(&be->uc, user_id);
	sqlite3_stmt *st = be->w[W_USAGE_SUB];

	if (u != NULL) {
		u->queued -= n;
		u->bytes -= bytes;
		u->dirty = 1;
		return SQLITE_OK;
	}
	sqlite3_bind_int64(st, 1, user_id);
	sqlite3_bind_int64(st, 2, n);
	sqlite3_bind_int64(st, 3, bytes);
	return sq_run(st);
}

static int
sq_invite_add(struct store_backend *be, struct store_req *req)
{
	sqlite3_stmt *st = be->w[W_INVITE_INSERT];

	sq_bind_blob(st, 1, req->u.invite.hash, STORE_INVITE_HASH_LEN);
	sqlite3_bind_int64(st, 2, req->u.invite.now_ms);
	sqlite3_bind_int64(st, 3, req->u.invite.expires_ms);
	return sq_run(st);
}

/* In a savepoint. */
static int
sq_register(struct store_backend *be, struct store_req *req)
{
	sqlite3_stmt *st;
	int64_t id;
	int rc, found, state;

	/* The invite first: without one, learn nothing about names. */
	if (req->u.reg.has_invite) {
		st = be->w[W_INVITE_USE];
		sq_bind_blob(st, 1, req->u.reg.invite, STORE_INVITE_HASH_LEN);
		sqlite3_bind_int64(st, 2, req->u.reg.now_ms);
		if ((rc = sq_run(st)) != SQLITE_OK)
			return rc;
		if (sqlite3_changes(be->wdb) == 0) {
			req->status = TERN_EDENIED;
			return SQLITE_OK;
		}
	}
	rc = sq_user_by_name(be, req->u.reg.name, &id, &state);
	if (rc == SQLITE_ROW) {
		req->status = TERN_EEXIST;
		return SQLITE_OK;
	}
	if (rc != SQLITE_DONE)
		return rc;
	st = be->w[W_KEY_EXISTS];
	sq_bind_blob(st, 1, req->u.reg.key, STORE_KEY_LEN);
	if ((rc = sq_exists(st, &found)) != SQLITE_OK)
		return rc;
	if (found) {
		req->status = TERN_EKEY;
		return SQLITE_OK;
	}

	st = be->w[W_USER_INSERT];
	sq_bind_text(st, 1, req->u.reg.name);
	sqlite3_bind_int64(st, 2, req->u.reg.now_ms);
	if ((rc = sq_run(st)) != SQLITE_OK)
		return rc;
	id = sqlite3_last_insert_rowid(be->wdb);

	st = be->w[W_USAGE_INSERT];
	sqlite3_bind_int64(st, 1, id);
	if ((rc = sq_run(st)) != SQLITE_OK)
		return rc;

	st = be->w[W_DEVICE_INSERT];
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_int64(st, 2, 1);
	sq_bind_blob(st, 3, req->u.reg.key, STORE_KEY_LEN);
	sq_bind_text(st, 4, req->u.reg.dev_name);
	sqlite3_bind_int64(st, 5, req->u.reg.now_ms);
	if ((rc = sq_run(st)) != SQLITE_OK)
		return rc;

	if (req->u.reg.has_invite) {
		st = be->w[W_INVITE_SET_USER];
		sq_bind_blob(st, 1, req->u.reg.invite, STORE_INVITE_HASH_LEN);
		sqlite3_bind_int64(st, 2, id);
		if ((rc = sq_run(st)) != SQLITE_OK)
			return rc;
	}
	req->res.user_id = id;
	req->res.device_id = 1;
	return SQLITE_OK;
}

/* In a savepoint. */
static int
sq_device_add(struct store_backend *be, struct store_req *req)
{
	sqlite3_stmt *st;
	int64_t next = 0, n;
	int rc, state = 0, found;

	rc = sq_user_state(be, req->u.dev.user_id, &state, &next, NULL, 0);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return rc;
	if (rc == SQLITE_DONE || state == STORE_USER_DELETED) {
		req->status = TERN_ENOUSER;
		return SQLITE_OK;
	}
	if (state == STORE_USER_DISABLED) {
		req->status = TERN_EDENIED;
		return SQLITE_OK;
	}
	st = be->w[W_DEVICE_COUNT];
	sqlite3_bind_int64(st, 1, req->u.dev.user_id);
	if ((rc = sq_count(st, &n)) != SQLITE_OK)
		return rc;
	if (n >= (int64_t)be->lim.devices_max) {
		req->status = TERN_EQUOTA;
		return SQLITE_OK;
	}
	st = be->w[W_KEY_EXISTS];
	sq_bind_blob(st, 1, req->u.dev.key, STORE_KEY_LEN);
	if ((rc = sq_exists(st, &found)) != SQLITE_OK)
		return rc;
	if (found) {
		req->status = TERN_EKEY;
		return SQLITE_OK;
	}
	if (next <= 0 || next > UINT32_MAX) {
		req->status = TERN_EQUOTA; /* device ids exhausted */
		return SQLITE_OK;
	}
	st = be->w[W_DEVICE_INSERT];
	sqlite3_bind_int64(st, 1, req->u.dev.user_id);
	sqlite3_bind_int64(st, 2, next);
	sq_bind_blob(st, 3, req->u.dev.key, STORE_KEY_LEN);
	sq_bind_text(st, 4, req->u.dev.dev_name);
	sqlite3_bind_int64(st, 5, req->u.dev.now_ms);
	if ((rc = sq_run(st)) != SQLITE_OK)
		return rc;
	st = be->w[W_USER_NEXT_DEVICE];
	sqlite3_bind_int64(st, 1, req->u.dev.user_id);
	if ((rc = sq_run(st)) != SQLITE_OK)
		return rc;
	req->res.user_id = req->u.dev.user_id;
	req->res.device_id = (uint32_t)next;
	return SQLITE_OK;
}

/* sq_keys_delete deletes a device's keys (device_id 0: all of user's). */
static int
sq_keys_delete(struct store_backend *be, int64_t user_id, uint32_t device_id)
{
	static const int per_device[] = {W_PREKEY_DELETE_DEVICE,
	    W_KEYS_DELETE_DEVICE};
	static const int per_user[] = {W_PREKEY_DELETE_USER, W_KEYS_DELETE_USER};
	const int *steps = device_id != 0 ? per_device : per_user;
	sqlite3_stmt *st;
	int i, rc;

	/* Prekeys first: they reference the key row. */
	for (i = 0; i < 2; i++) {
		st = be->w[steps[i]];
		sqlite3_bind_int64(st, 1, user_id);
		if (device_id != 0)
			sqlite3_bind_int64(st, 2, device_id);
		if ((rc = sq_run(st)) != SQLITE_OK)
			return rc;
	}
	return SQLITE_OK;
}

/* In a savepoint. */
static int
sq_device_remove(struct store_backend *be, struct store_req *req)
{
	sqlite3_stmt *st = be->w[W_ENV_DELETE_DEVICE];
	int64_t n = 0, bytes = 0;
	int rc;

	/* Keys and envelopes first: they reference the device. */
	if ((rc = sq_keys_delete(be, req->u.dev.user_id,
	    req->u.dev.device_id)) != SQLITE_OK)
		return rc;
	sqlite3_bind_int64(st, 1, req->u.dev.user_id);
	sqlite3_bind_int64(st, 2, req->u.dev.device_id);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		n++;
		bytes += sqlite3_column_int64(st, 0);
	}
	sq_reset(st);
	if (rc != SQLITE_DONE)
		return rc;
	st = be->w[W_DEVICE_DELETE];
	sqlite3_bind_int64(st, 1, req->u.dev.user_id);
	sqlite3_bind_int64(st, 2, req->u.dev.device_id);
	if ((rc = sq_run(st)) != SQLITE_OK)
		return rc;
	if (sqlite3_changes(be->wdb) == 0) {
		req->status = TERN_ENOUSER;
		return SQLITE_OK;
	}
	if (n > 0 && (rc = sq_usage_sub(be, req->u.dev.user_id, n, bytes)) !=
	    SQLITE_OK)
		return rc;
	req->res.user_id = req->u.dev.user_id;
	req->res.device_id = req->u.dev.device_id;
	return SQLITE_OK;
}

static int
sq_user_disable(struct store_backend *be, struct store_req *req)
{
	sqlite3_stmt *st;
	int64_t id;
	int rc, state;

	rc = sq_user_by_name(be, req->u.admin.name, &id, &state);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return rc;
	if (rc == SQLITE_DONE || state == STORE_USER_DELETED) {
		req->status = TERN_ENOUSER;
		return SQLITE_OK;
	}
	/* Nobody may fetch a disabled user's keys, and it cannot come back
	 * (SPEC.md 6.6): they go. */
	if ((rc = sq_keys_delete(be, id, 0)) != SQLITE_OK)
		return rc;
	st = be->w[W_USER_DISABLE];
	sqlite3_bind_int64(st, 1, id);
	if ((rc = sq_run(st)) != SQLITE_OK)
		return rc;
	req->res.user_id = id;
	return SQLITE_OK;
}

/* In a savepoint. */
static int
sq_user_delete(struct store_backend *be, struct store_req *req)
{
	static const int steps[] = {
		W_ENV_DELETE_USER, W_CONTACT_DELETE_ALL, W_PREKEY_DELETE_USER,
		W_KEYS_DELETE_USER, W_DEVICE_DELETE_ALL,
		W_USAGE_CLEAR, W_USER_DELETE,
	};
	sqlite3_stmt *st;
	int64_t id;
	int rc, state;
	size_t i;

	rc = sq_user_by_name(be, req->u.admin.name, &id, &state);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return rc;
	if (rc == SQLITE_DONE || state == STORE_USER_DELETED) {
		req->status = TERN_ENOUSER;
		return SQLITE_OK;
	}
	for (i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		st = be->w[steps[i]];
		sqlite3_bind_int64(st, 1, id);
		if ((rc = sq_run(st)) != SQLITE_OK)
			return rc;
	}
	req->res.user_id = id;
	return SQLITE_OK;
}

/* Profile, privacy and last seen: one UPDATE each. */
static int
sq_profile(struct store_backend *be, struct store_req *req)
{
	sqlite3_stmt *st;
	int rc;

	switch (req->op) {
	case STORE_OP_PROFILE_SET:
		st = be->w[W_PROFILE_SET];
		sq_bind_text(st, 2, req->u.prof.display_name);
		sq_bind_text(st, 3, req->u.prof.status_text);
		break;
	case STORE_OP_PRIVACY_SET:
		st = be->w[W_PRIVACY_SET];
		sqlite3_bind_int(st, 2, req->u.prof.privacy);
		break;
	default:
		st = be->w[W_LAST_SEEN];
		sqlite3_bind_int64(st, 2, req->u.prof.seen_ms);
		break;
	}
	sqlite3_bind_int64(st, 1, req->u.prof.user_id);
	if ((rc = sq_run(st)) != SQLITE_OK)
		return rc;
	if (sqlite3_changes(be->wdb) == 0)
		req->status = TERN_ENOUSER;
	else
		req->res.user_id = req->u.prof.user_id;
	return SQLITE_OK;
}

static int
sq_contact_add(struct store_backend *be, struct store_req *req)
{
	sqlite3_stmt *st;
	int64_t n;
	int rc, state = 0, found;

	rc = sq_user_state(be, req->u.contact.user_id, &state, NULL, NULL, 0);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return rc;
	if (rc == SQLITE_DONE || state == STORE_USER_DELETED) {
		req->status = TERN_ENOUSER;
		return SQLITE_OK;
	}
	st = be->w[W_CONTACT_EXISTS];
	sqlite3_bind_int64(st, 1, req->u.contact.user_id);
	sq_bind_text(st, 2, req->u.contact.address);
	if ((rc = sq_exists(st, &found)) != SQLITE_OK)
		return rc;
	if (found) {
		req->res.duplicate = 1;
		return SQLITE_OK;
	}
	st = be->w[W_CONTACT_COUNT];
	sqlite3_bind_int64(st, 1, req->u.contact.user_id);
	if ((rc = sq_count(st, &n)) != SQLITE_OK)
		return rc;
	if (n >= (int64_t)be->lim.contacts_max) {
		req->status = TERN_EQUOTA;
		return SQLITE_OK;
	}
	st = be->w[W_CONTACT_INSERT];
	sqlite3_bind_int64(st, 1, req->u.contact.user_id);
	sq_bind_text(st, 2, req->u.contact.address);
	sqlite3_bind_int64(st, 3, req->u.contact.now_ms);
	return sq_run(st);
}

static int
sq_contact_remove(struct store_backend *be, struct store_req *req)
{
	sqlite3_stmt *st = be->w[W_CONTACT_DELETE];
	int rc;

	sqlite3_bind_int64(st, 1, req->u.contact.user_id);
	sq_bind_text(st, 2, req->u.contact.address);
	if ((rc = sq_run(st)) != SQLITE_OK)
		return rc;
	if (sqlite3_changes(be->wdb) == 0)
		req->status = TERN_ENOTFOUND;
	return SQLITE_OK;
}

/*
 * sq_env_insert inserts one envelope row unless its (recipient, id) is
 * queued already. *inserted tells which.
 */
static int
sq_env_insert(struct store_backend *be, const struct store_env_in *e,
    int *inserted)
{
	sqlite3_stmt *st = be->w[W_ENV_INSERT];
	int rc;

	sqlite3_bind_int64(st, 1, e->rcpt_user);
	sqlite3_bind_int64(st, 2, e->rcpt_device);
	sq_bind_blob(st, 3, e->env_id, STORE_ENV_ID_LEN);
	sqlite3_bind_int(st, 4, e->cls);
	sq_bind_text(st, 5, e->sender_addr);
	if (e->sender_user > 0)
		sqlite3_bind_int64(st, 6, e->sender_user);
	else
		sqlite3_bind_null(st, 6);
	sqlite3_bind_int64(st, 7, e->sender_device);
	sqlite3_bind_int64(st, 8, e->sent_ms);
	sqlite3_bind_int64(st, 9, e->received_ms);
	sqlite3_bind_int64(st, 10, e->expires_ms);
	sq_bind_blob(st, 11, e->payload, e->payload_len);
	rc = sq_run(st);
	*inserted = rc == SQLITE_OK && sqlite3_changes(be->wdb) == 1;
	return rc;
}

/*
 * Enqueue without a savepoint: the INSERT comes first and fails alone
 * (unknown device: foreign key); the quota UPDATE that follows either
 * applies or changes nothing, in which case the row is deleted again.
 */
static int
sq_enqueue(struct store_backend *be, struct store_req *req)
{
	const struct store_env_in *e = &req->u.enq;
	struct sq_uc_ent *u;
	sqlite3_stmt *st;
	int64_t seq;
	int rc, inserted, state = 0;

	if ((rc = sq_env_insert(be, e, &inserted)) != SQLITE_OK)
		return rc;
	if (!inserted) {
		/* A retry: report the copy already queued. */
		st = be->w[W_ENV_SEQ_BY_ID];
		sqlite3_bind_int64(st, 1, e->rcpt_user);
		sqlite3_bind_int64(st, 2, e->rcpt_device);
		sq_bind_blob(st, 3, e->env_id, STORE_ENV_ID_LEN);
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW)
			req->res.seq = sqlite3_column_int64(st, 0);
		sq_reset(st);
		if (rc != SQLITE_ROW)
			return rc == SQLITE_DONE ? SQLITE_INTERNAL : rc;
		req->res.duplicate = 1;
		return SQLITE_OK;
	}
	seq = sqlite3_last_insert_rowid(be->wdb);

	/* The quota: counted in the usage cache, written back at commit. */
	if ((rc = uc_get(be, e->rcpt_user, &u)) != SQLITE_OK)
		return rc;
	/* Signed, as the SQL it replaced compared (limits past INT64_MAX
	 * clamped, as sq_bind_u64 bound them). */
	if (u != NULL && u->state == STORE_USER_ACTIVE &&
	    u->queued < sq_i64(be->lim.quota_count) &&
	    u->bytes + (int64_t)e->payload_len <=
	    sq_i64(be->lim.quota_bytes)) {
		u->queued++;
		u->bytes += (int64_t)e->payload_len;
		u->dirty = 1;
		req->res.seq = seq;
		return SQLITE_OK;
	}

	/* Refused: take the row back out and say why. */
	st = be->w[W_ENV_DELETE_SEQ];
	sqlite3_bind_int64(st, 1, seq);
	if ((rc = sq_run(st)) != SQLITE_OK)
		return rc;
	rc = sq_user_state(be, e->rcpt_user, &state, NULL, NULL, 0);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return rc;
	if (rc == SQLITE_DONE || state == STORE_USER_DELETED)
		req->status = TERN_ENOUSER;
	else if (state == STORE_USER_DISABLED)
		req->status = TERN_EDENIED;
	else
		req->status = TERN_EQUOTA;
	return SQLITE_OK;
}

static int
sq_ack(struct store_backend *be, struct store_req *req)
{
	sqlite3_stmt *st = be->w[W_ENV_ACK];
	int64_t seq = 0, len = 0;
	int rc;

	sqlite3_bind_int64(st, 1, req->u.ack.user_id);
	sqlite3_bind_int64(st, 2, req->u.ack.device_id);
	sq_bind_blob(st, 3, req->u.ack.env_id, STORE_ENV_ID_LEN);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		seq = sqlite3_column_int64(st, 0);
		len = sqlite3_column_int64(st, 1);
	}
	sq_reset(st);
	if (rc == SQLITE_DONE) {
		req->status = TERN_ENOTFOUND;
		return SQLITE_OK;
	}
	if (rc != SQLITE_ROW)
		return rc;
	/* The same transaction, the only writer: the row is still there. */
	st = be->w[W_ENV_DELETE_SEQ];
	sqlite3_bind_int64(st, 1, seq);
	if ((rc = sq_run(st)) != SQLITE_OK)
		return rc;
	if (sqlite3_changes(be->wdb) != 1)
		return SQLITE_INTERNAL;
	return sq_usage_sub(be, req->u.ack.user_id, 1, len);
}

/*
 * sq_notice_queue queues a notice of kind about envelope (ref_cls,
 * ref_id), addressed to peer_addr's peer_device, to the local sending
 * device (sender_user, sender_device). A sender device removed meanwhile
 * (or its user deleted) fails the foreign key: then there is nobody to
 * tell and *queued stays 0.
 */
static int
sq_notice_queue(struct store_backend *be, uint8_t kind, uint8_t ref_cls,
    const uint8_t ref_id[STORE_ENV_ID_LEN], const char *peer_addr,
    size_t peer_len, uint32_t peer_device, int64_t sender_user,
    uint32_t sender_device, int64_t now, int *queued)
{
	struct store_env_in n;
	int rc, inserted;
	ssize_t got;

	*queued = 0;
	memset(&n, 0, sizeof(n));
	n.rcpt_user = sender_user;
	n.rcpt_device = sender_device;
	do
		got = getrandom(n.env_id, sizeof(n.env_id), 0);
	while (got < 0 && errno == EINTR);
	if (got != (ssize_t)sizeof(n.env_id))
		return SQLITE_IOERR; /* no randomness: try the batch again */
	n.cls = STORE_CLASS_NOTICE;
	n.sender_addr = "";
	n.sender_device = 0;
	n.sent_ms = n.received_ms = now;
	n.expires_ms = now + be->lim.notice_ttl_ms;
	n.payload = be->notice;
	n.payload_len = store_notice_build(be->notice, kind, ref_cls, ref_id,
	    peer_device, peer_addr, peer_len);

	rc = sq_env_insert(be, &n, &inserted);
	if (sq_is_constraint(rc))
		return SQLITE_OK; /* sender device gone */
	if (rc != SQLITE_OK || !inserted)
		return rc;
	/* Notices bypass the quota but are counted like envelopes. */
	if ((rc = sq_usage_add(be, n.rcpt_user, (int64_t)n.payload_len)) !=
	    SQLITE_OK)
		return rc;
	*queued = 1;
	return SQLITE_OK;
}

/*
 * sq_notice queues an "expired undelivered" notice about the local
 * envelope x to its local sender's device.
 */
static int
sq_notice(struct store_backend *be, const struct sq_expired *x, int64_t now,
    int *queued)
{
	char name[STORE_NAME_MAX + 1], addr[STORE_ADDR_MAX + 1];
	int rc, state;

	*queued = 0;
	rc = sq_user_state(be, x->rcpt_user, &state, NULL, name, sizeof(name));
	if (rc != SQLITE_ROW)
		return rc == SQLITE_DONE ? SQLITE_OK : rc;
	/*
	 * A valid address is at most STORE_ADDR_MAX bytes (ident.h checks
	 * names at registration), so this fits the notice's u8 length.
	 */
	if (be->lim.domain != NULL)
		snprintf(addr, sizeof(addr), "%s@%s", name, be->lim.domain);
	else
		snprintf(addr, sizeof(addr), "%s", name);
	return sq_notice_queue(be, STORE_NOTICE_EXPIRED, x->cls, x->env_id,
	    addr, strlen(addr), x->rcpt_device, x->sender_user,
	    x->sender_device, now, queued);
}

/* sq_blob copies an n-byte blob column (length checked by the schema). */
static void
sq_blob(uint8_t *dst, size_t n, sqlite3_stmt *st, int col)
{
	const void *p = sqlite3_column_blob(st, col);

	memset(dst, 0, n);
	if (p != NULL && (size_t)sqlite3_column_bytes(st, col) == n)
		memcpy(dst, p, n);
}

/* --- Writer: the outbound federation queue -------------------------------- */

/*
 * sq_fed_usage_sub takes one entry of len payload bytes off the node-wide
 * and the domain's counts, and drops the domain's row once it is empty so
 * that fed_usage lists exactly the domains with traffic waiting.
 */
static int
sq_fed_usage_sub(struct store_backend *be, const char *domain, int64_t len)
{
	sqlite3_stmt *st = be->w[W_FED_TOTAL_SUB];
	int rc;

	sqlite3_bind_int64(st, 1, len);
	if ((rc = sq_run(st)) != SQLITE_OK)
		return rc;
	st = be->w[W_FED_USAGE_SUB];
	sq_bind_text(st, 1, domain);
	sqlite3_bind_int64(st, 2, len);
	if ((rc = sq_run(st)) != SQLITE_OK)
		return rc;
	st = be->w[W_FED_USAGE_DROP];
	sq_bind_text(st, 1, domain);
	return sq_run(st);
}

/* What sq_fed_remove reports. */
struct sq_fed_removed {
	int found;                          /* the entry was queued */
	int queued;                         /* a notice was queued */
	int64_t sender_user;                /* whom it went to, if queued */
	uint32_t sender_device;
};

/*
 * sq_fed_remove deletes entry seq and updates the counts; with kind != 0
 * it then queues a notice of that kind to the entry's sending device,
 * whose peer is the remote recipient. Every statement stands alone (the
 * lookup is the only one that can find nothing, and it comes first), so
 * no savepoint is needed.
 */
static int
sq_fed_remove(struct store_backend *be, int64_t seq, uint8_t kind,
    int64_t now, struct sq_fed_removed *out)
{
	sqlite3_stmt *st = be->w[W_FED_REMOVE];
	char domain[STORE_DOMAIN_MAX + 1], to[STORE_ADDR_MAX + 1];
	uint8_t id[STORE_ENV_ID_LEN];
	uint32_t to_device = 0, sender_device = 0;
	int64_t sender_user = 0, len = 0;
	uint8_t cls = 0;
	int rc;

	memset(out, 0, sizeof(*out));
	sqlite3_bind_int64(st, 1, seq);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		sq_text(domain, sizeof(domain), st, 0);
		sq_blob(id, sizeof(id), st, 1);
		sq_text(to, sizeof(to), st, 2);
		to_device = (uint32_t)sqlite3_column_int64(st, 3);
		cls = (uint8_t)sqlite3_column_int(st, 4);
		sender_user = sqlite3_column_int64(st, 5);
		sender_device = (uint32_t)sqlite3_column_int64(st, 6);
		len = sqlite3_column_int64(st, 7);
	}
	sq_reset(st);
	if (rc == SQLITE_DONE)
		return SQLITE_OK;
	if (rc != SQLITE_ROW)
		return rc;
	st = be->w[W_FED_DELETE_SEQ];
	sqlite3_bind_int64(st, 1, seq);
	if ((rc = sq_run(st)) != SQLITE_OK)
		return rc;
	out->found = 1;
	if ((rc = sq_fed_usage_sub(be, domain, len)) != SQLITE_OK)
		return rc;
	/* A relayed entry (no local sender) tells nobody here. */
	if (kind == 0 || sender_user == 0)
		return SQLITE_OK;
	rc = sq_notice_queue(be, kind, cls, id, to, strlen(to), to_device,
	    sender_user, sender_device, now, &out->queued);
	if (rc == SQLITE_OK && out->queued) {
		out->sender_user = sender_user;
		out->sender_device = sender_device;
	}
	return rc;
}

/*
 * Enqueue without a savepoint, as sq_enqueue: the INSERT comes first and
 * fails alone (unknown sender: foreign key); the bound's UPDATE either
 * applies or changes nothing, in which case the row is deleted again.
 * A repeat is recognised before the bound is checked, so a retry of an
 * entry already queued succeeds even when the queue is full.
 */
static int
sq_fed_enqueue(struct store_backend *be, struct store_req *req)
{
	const struct store_fed_in *e = &req->u.fed_enq;
	sqlite3_stmt *st = be->w[W_FED_INSERT];
	int64_t seq;
	int rc;

	sq_bind_text(st, 1, e->dest_domain);
	sq_bind_blob(st, 2, e->env_id, STORE_ENV_ID_LEN);
	sq_bind_text(st, 3, e->to_addr);
	sqlite3_bind_int64(st, 4, e->to_device);
	sqlite3_bind_int(st, 5, e->cls);
	if (e->sender_user > 0)
		sqlite3_bind_int64(st, 6, e->sender_user);
	else
		sqlite3_bind_null(st, 6);
	sq_bind_text(st, 7, e->sender_addr);
	sqlite3_bind_int64(st, 8, e->sender_device);
	sqlite3_bind_int64(st, 9, e->sent_ms);
	sqlite3_bind_int64(st, 10, e->received_ms);
	sqlite3_bind_int64(st, 11, e->expires_ms);
	sq_bind_blob(st, 12, e->payload, e->payload_len);
	if (e->sig != NULL)
		sq_bind_blob(st, 13, e->sig, STORE_FED_SIG_LEN);
	else
		sqlite3_bind_null(st, 13);
	if ((rc = sq_run(st)) != SQLITE_OK)
		return rc;
	if (sqlite3_changes(be->wdb) != 1) {
		/* A retry: report the copy already queued. */
		st = be->w[W_FED_SEQ_BY_ID];
		sq_bind_blob(st, 1, e->env_id, STORE_ENV_ID_LEN);
		sq_bind_text(st, 2, e->to_addr);
		sqlite3_bind_int64(st, 3, e->to_device);
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW)
			req->res.seq = sqlite3_column_int64(st, 0);
		sq_reset(st);
		if (rc != SQLITE_ROW)
			return rc == SQLITE_DONE ? SQLITE_INTERNAL : rc;
		req->res.duplicate = 1;
		return SQLITE_OK;
	}
	seq = sqlite3_last_insert_rowid(be->wdb);

	st = be->w[W_FED_TOTAL_ADD_CHECKED];
	sqlite3_bind_int64(st, 1, (int64_t)e->payload_len);
	sq_bind_u64(st, 2, be->lim.fed_queue_max);
	sq_bind_u64(st, 3, be->lim.fed_queue_bytes);
	if ((rc = sq_run(st)) != SQLITE_OK)
		return rc;
	if (sqlite3_changes(be->wdb) != 1) {
		/* Full: take the row back out. */
		st = be->w[W_FED_DELETE_SEQ];
		sqlite3_bind_int64(st, 1, seq);
		if ((rc = sq_run(st)) != SQLITE_OK)
			return rc;
		req->status = TERN_EBUSY;
		return SQLITE_OK;
	}
	st = be->w[W_FED_USAGE_ADD];
	sq_bind_text(st, 1, e->dest_domain);
	sqlite3_bind_int64(st, 2, (int64_t)e->payload_len);
	if ((rc = sq_run(st)) != SQLITE_OK)
		return rc;
	req->res.seq = seq;
	return SQLITE_OK;
}

static int
sq_fed_done(struct store_backend *be, struct store_req *req)
{
	struct sq_fed_removed x;
	size_t i;
	int rc;

	for (i = 0; i < req->u.fed_done.n; i++) {
		rc = sq_fed_remove(be, req->u.fed_done.seqs[i], 0, 0, &x);
		if (rc != SQLITE_OK)
			return rc;
		req->res.fed_deleted += (uint32_t)x.found;
	}
	return SQLITE_OK;
}

static int
sq_fed_refuse(struct store_backend *be, struct store_req *req)
{
	struct sq_fed_removed x;
	int rc;

	rc = sq_fed_remove(be, req->u.fed_one.seq, req->u.fed_one.kind,
	    req->u.fed_one.now_ms, &x);
	if (rc != SQLITE_OK)
		return rc;
	if (!x.found) {
		req->status = TERN_ENOTFOUND;
		return SQLITE_OK;
	}
	req->res.notices = (uint32_t)x.queued;
	req->res.notice_user = x.sender_user;
	req->res.notice_device = x.sender_device;
	return SQLITE_OK;
}

static int
sq_fed_attempt(struct store_backend *be, struct store_req *req)
{
	sqlite3_stmt *st = be->w[W_FED_ATTEMPT];
	int rc;

	sqlite3_bind_int64(st, 1, req->u.fed_one.seq);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		req->res.attempts = (uint32_t)sqlite3_column_int64(st, 0);
	sq_reset(st);
	if (rc == SQLITE_DONE) {
		req->status = TERN_ENOTFOUND;
		return SQLITE_OK;
	}
	return rc == SQLITE_ROW ? SQLITE_OK : rc;
}

static int
sq_peer_key_save(struct store_backend *be, struct store_req *req)
{
	sqlite3_stmt *st = be->w[W_PEER_KEY_SAVE];
	int rc;

	sq_bind_text(st, 1, req->u.peer.domain);
	sqlite3_bind_blob(st, 2, req->u.peer.key, 32, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, req->u.peer.now_ms);
	rc = sqlite3_step(st);
	sq_reset(st);
	if (rc != SQLITE_DONE)
		return rc;
	st = be->w[W_PEER_KEY_TRIM];
	sq_bind_text(st, 1, req->u.peer.domain);
	rc = sqlite3_step(st);
	sq_reset(st);
	return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/*
 * sq_fed_expire removes up to budget outbound entries past their expiry
 * and notices their senders; sets res->more if more are due.
 */
static int
sq_fed_expire(struct store_backend *be, struct store_req *req,
    uint32_t budget)
{
	sqlite3_stmt *st = be->w[W_FED_EXPIRED];
	int64_t now = req->u.expire.now_ms;
	struct sq_fed_removed x;
	size_t n = 0, i;
	int rc;

	/* be->expired holds expire_max + 1 rows: room for budget + 1 seqs. */
	sqlite3_bind_int64(st, 1, now);
	sqlite3_bind_int64(st, 2, (int64_t)budget + 1);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW && n <= budget)
		be->expired[n++].seq = sqlite3_column_int64(st, 0);
	sq_reset(st);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		return rc;
	if (n > budget) {
		n = budget;
		req->res.more = 1;
	}
	for (i = 0; i < n; i++) {
		rc = sq_fed_remove(be, be->expired[i].seq, STORE_NOTICE_EXPIRED,
		    now, &x);
		if (rc != SQLITE_OK)
			return rc;
		req->res.fed_expired += (uint32_t)x.found;
		req->res.notices += (uint32_t)x.queued;
	}
	return SQLITE_OK;
}

/* Expire: every statement stands alone; no savepoint is needed. */
static int
sq_expire(struct store_backend *be, struct store_req *req)
{
	sqlite3_stmt *st = be->w[W_ENV_EXPIRED];
	int64_t now = req->u.expire.now_ms;
	size_t n = 0, i;
	int rc, queued;

	sqlite3_bind_int64(st, 1, now);
	sqlite3_bind_int64(st, 2, (int64_t)be->lim.expire_max + 1);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW && n <= be->lim.expire_max) {
		struct sq_expired *x = &be->expired[n++];
		const void *id = sqlite3_column_blob(st, 3);

		x->seq = sqlite3_column_int64(st, 0);
		x->rcpt_user = sqlite3_column_int64(st, 1);
		x->rcpt_device = (uint32_t)sqlite3_column_int64(st, 2);
		memset(x->env_id, 0, sizeof(x->env_id));
		if (id != NULL && sqlite3_column_bytes(st, 3) == STORE_ENV_ID_LEN)
			memcpy(x->env_id, id, STORE_ENV_ID_LEN);
		x->cls = (uint8_t)sqlite3_column_int(st, 4);
		x->sender_user = sqlite3_column_int64(st, 5);
		x->sender_device = (uint32_t)sqlite3_column_int64(st, 6);
		x->len = sqlite3_column_int64(st, 7);
	}
	sq_reset(st);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		return rc;
	if (n > be->lim.expire_max) {
		n = be->lim.expire_max;
		req->res.more = 1;
	}
	for (i = 0; i < n; i++) {
		const struct sq_expired *x = &be->expired[i];

		st = be->w[W_ENV_DELETE_SEQ];
		sqlite3_bind_int64(st, 1, x->seq);
		if ((rc = sq_run(st)) != SQLITE_OK)
			return rc;
		if ((rc = sq_usage_sub(be, x->rcpt_user, 1, x->len)) != SQLITE_OK)
			return rc;
		req->res.expired++;
		if (x->cls == STORE_CLASS_NOTICE || x->sender_user <= 0)
			continue;
		if ((rc = sq_notice(be, x, now, &queued)) != SQLITE_OK)
			return rc;
		req->res.notices += (uint32_t)queued;
	}
	/*
	 * Outbound entries share the pass's budget. With none left, outbound
	 * entries may be due too: ask for another pass.
	 */
	if (n >= be->lim.expire_max) {
		req->res.more = 1;
		return SQLITE_OK;
	}
	return sq_fed_expire(be, req, be->lim.expire_max - (uint32_t)n);
}

/*
 * Keys: in a savepoint, because the identity check may delete prekeys
 * and the quota check comes only after the inserts (an id already held
 * is replaced, so the count is known only then).
 */
static int
sq_keys_put(struct store_backend *be, struct store_req *req)
{
	const struct store_keys_in *k = &req->u.keys;
	uint8_t old[STORE_KEY_LEN];
	sqlite3_stmt *st;
	int64_t n;
	size_t i;
	int rc, state = 0, found;

	rc = sq_user_state(be, k->user_id, &state, NULL, NULL, 0);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return rc;
	if (rc == SQLITE_DONE || state == STORE_USER_DELETED) {
		req->status = TERN_ENOUSER;
		return SQLITE_OK;
	}
	if (state == STORE_USER_DISABLED) {
		req->status = TERN_EDENIED;
		return SQLITE_OK;
	}
	st = be->w[W_DEVICE_EXISTS];
	sqlite3_bind_int64(st, 1, k->user_id);
	sqlite3_bind_int64(st, 2, k->device_id);
	if ((rc = sq_exists(st, &found)) != SQLITE_OK)
		return rc;
	if (!found) {
		req->status = TERN_ENOUSER;
		return SQLITE_OK;
	}

	/* A new identity (a device restored without its keys): the old
	 * one-time prekeys cannot be used with it any more. */
	st = be->w[W_KEYS_IDENTITY];
	sqlite3_bind_int64(st, 1, k->user_id);
	sqlite3_bind_int64(st, 2, k->device_id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		sq_blob(old, sizeof(old), st, 0);
	sq_reset(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return rc;
	if (rc == SQLITE_ROW && memcmp(old, k->identity, STORE_KEY_LEN) != 0) {
		st = be->w[W_PREKEY_DELETE_DEVICE];
		sqlite3_bind_int64(st, 1, k->user_id);
		sqlite3_bind_int64(st, 2, k->device_id);
		if ((rc = sq_run(st)) != SQLITE_OK)
			return rc;
	}

	st = be->w[W_KEYS_UPSERT];
	sqlite3_bind_int64(st, 1, k->user_id);
	sqlite3_bind_int64(st, 2, k->device_id);
	sq_bind_blob(st, 3, k->identity, STORE_KEY_LEN);
	sqlite3_bind_int64(st, 4, k->registration_id);
	sqlite3_bind_int64(st, 5, k->signed_prekey_id);
	sq_bind_blob(st, 6, k->signed_prekey, STORE_KEY_LEN);
	sq_bind_blob(st, 7, k->signature, STORE_SIG_LEN);
	sq_bind_blob(st, 8, k->last_resort, STORE_KEY_LEN);
	if ((rc = sq_run(st)) != SQLITE_OK)
		return rc;

	st = be->w[W_PREKEY_PUT];
	for (i = 0; i < k->n_prekeys; i++) {
		sqlite3_bind_int64(st, 1, k->user_id);
		sqlite3_bind_int64(st, 2, k->device_id);
		sqlite3_bind_int64(st, 3, k->prekeys[i].id);
		sq_bind_blob(st, 4, k->prekeys[i].key, STORE_KEY_LEN);
		if ((rc = sq_run(st)) != SQLITE_OK)
			return rc;
	}

	st = be->w[W_PREKEY_COUNT];
	sqlite3_bind_int64(st, 1, k->user_id);
	sqlite3_bind_int64(st, 2, k->device_id);
	if ((rc = sq_count(st, &n)) != SQLITE_OK)
		return rc;
	if (n > STORE_PREKEYS_MAX) {
		req->status = TERN_EQUOTA; /* sq_exec rolls the savepoint back */
		return SQLITE_OK;
	}
	req->res.prekeys = (uint32_t)n;
	req->res.signed_prekey_id = k->signed_prekey_id;
	return SQLITE_OK;
}

/*
 * Bundle fetch: a write (it consumes prekeys), so it runs in the writer's
 * transaction like every write, and the writer runs requests one at a
 * time: two fetches never see the same prekey. Every statement stands
 * alone and none can fail a constraint: no savepoint.
 */
static int
sq_bundle_get(struct store_backend *be, struct store_req *req)
{
	int64_t uid = req->u.bundle.user_id, left;
	uint32_t dev = req->u.bundle.device_id;
	struct store_bundle *b;
	sqlite3_stmt *st;
	size_t n = 0, i;
	int rc, state = 0, found;

	rc = sq_user_state(be, uid, &state, NULL, NULL, 0);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return rc;
	if (rc == SQLITE_DONE || state != STORE_USER_ACTIVE) {
		req->status = TERN_ENOUSER;
		return SQLITE_OK;
	}
	if (dev != 0) {
		st = be->w[W_DEVICE_EXISTS];
		sqlite3_bind_int64(st, 1, uid);
		sqlite3_bind_int64(st, 2, dev);
		if ((rc = sq_exists(st, &found)) != SQLITE_OK)
			return rc;
		if (!found) {
			req->status = TERN_ENOUSER;
			return SQLITE_OK;
		}
	}
	b = calloc(STORE_BUNDLES_MAX, sizeof(*b));
	if (b == NULL)
		return SQLITE_NOMEM;
	/* The front frees it with the request, whatever happens next. */
	req->out_bundles = b;

	/* Read the key rows first, then take prekeys: no statement is left
	 * half-stepped while another writes the same tables. */
	st = be->w[W_KEYS_LIST];
	sqlite3_bind_int64(st, 1, uid);
	sqlite3_bind_int64(st, 2, dev);
	sqlite3_bind_int64(st, 3, STORE_BUNDLES_MAX);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW && n < STORE_BUNDLES_MAX) {
		struct store_bundle *x = &b[n++];
		x->device_id = (uint32_t)sqlite3_column_int64(st, 0);
		x->registration_id = (uint32_t)sqlite3_column_int64(st, 1);
		sq_blob(x->identity, STORE_KEY_LEN, st, 2);
		x->signed_prekey_id = (uint32_t)sqlite3_column_int64(st, 3);
		sq_blob(x->signed_prekey, STORE_KEY_LEN, st, 4);
		sq_blob(x->signature, STORE_SIG_LEN, st, 5);
		/* The last-resort key, unless a one-time prekey is left. */
		x->prekey_id = STORE_LAST_RESORT_ID;
		sq_blob(x->prekey, STORE_KEY_LEN, st, 6);
	}
	sq_reset(st);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		return rc;

	for (i = 0; i < n; i++) {
		st = be->w[W_PREKEY_TAKE];
		sqlite3_bind_int64(st, 1, uid);
		sqlite3_bind_int64(st, 2, b[i].device_id);
		/* With RETURNING, the first step makes every change. */
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW) {
			b[i].prekey_id = (uint32_t)sqlite3_column_int64(st, 0);
			sq_blob(b[i].prekey, STORE_KEY_LEN, st, 1);
		}
		sq_reset(st);
		if (rc != SQLITE_ROW && rc != SQLITE_DONE)
			return rc;
		st = be->w[W_PREKEY_COUNT];
		sqlite3_bind_int64(st, 1, uid);
		sqlite3_bind_int64(st, 2, b[i].device_id);
		if ((rc = sq_count(st, &left)) != SQLITE_OK)
			return rc;
		b[i].prekeys_left = (uint32_t)left;
	}
	req->res.bundles = b;
	req->res.n_bundles = n;
	return SQLITE_OK;
}

static int
sq_savepoint_op(enum store_op op)
{
	return op == STORE_OP_REGISTER || op == STORE_OP_DEVICE_ADD ||
	    op == STORE_OP_DEVICE_REMOVE || op == STORE_OP_USER_DELETE ||
	    op == STORE_OP_USER_DISABLE || op == STORE_OP_KEYS_PUT;
}

static int
sq_exec(struct store_backend *be, struct store_req *req)
{
	sq_body body;
	int sp = sq_savepoint_op(req->op), rc;

	switch (req->op) {
	case STORE_OP_INVITE_ADD:
		body = sq_invite_add;
		break;
	case STORE_OP_REGISTER:
		body = sq_register;
		break;
	case STORE_OP_DEVICE_ADD:
		body = sq_device_add;
		break;
	case STORE_OP_DEVICE_REMOVE:
		body = sq_device_remove;
		break;
	case STORE_OP_USER_DISABLE:
		body = sq_user_disable;
		break;
	case STORE_OP_USER_DELETE:
		body = sq_user_delete;
		break;
	case STORE_OP_PROFILE_SET:
	case STORE_OP_PRIVACY_SET:
	case STORE_OP_LAST_SEEN:
		body = sq_profile;
		break;
	case STORE_OP_CONTACT_ADD:
		body = sq_contact_add;
		break;
	case STORE_OP_CONTACT_REMOVE:
		body = sq_contact_remove;
		break;
	case STORE_OP_ENQUEUE:
		body = sq_enqueue;
		break;
	case STORE_OP_ACK:
		body = sq_ack;
		break;
	case STORE_OP_EXPIRE:
		body = sq_expire;
		break;
	case STORE_OP_KEYS_PUT:
		body = sq_keys_put;
		break;
	case STORE_OP_BUNDLE_GET:
		body = sq_bundle_get;
		break;
	case STORE_OP_FED_ENQUEUE:
		body = sq_fed_enqueue;
		break;
	case STORE_OP_FED_DONE:
		body = sq_fed_done;
		break;
	case STORE_OP_FED_REFUSE:
		body = sq_fed_refuse;
		break;
	case STORE_OP_FED_ATTEMPT:
		body = sq_fed_attempt;
		break;
	case STORE_OP_PEER_KEY_SAVE:
		body = sq_peer_key_save;
		break;
	default:
		req->status = TERN_EINVAL;
		return 0;
	}

	/* The usage cache is written back first (struct sq_ucache). */
	if (sp && ((rc = uc_flush(be)) != SQLITE_OK ||
	    (rc = sq_run(be->w[W_SAVEPOINT])) != SQLITE_OK))
		return sq_fatal(rc);
	rc = body(be, req);
	if (rc != SQLITE_OK) {
		if (!sq_is_constraint(rc))
			return sq_fatal(rc); /* the front rolls everything back */
		req->status = sq_constraint(rc);
	}
	if (req->status != 0) {
		memset(&req->res, 0, sizeof(req->res));
		if (sp && (rc = sq_run(be->w[W_ROLLBACK_TO])) != SQLITE_OK)
			return sq_fatal(rc);
	}
	if (sp && (rc = sq_run(be->w[W_RELEASE])) != SQLITE_OK)
		return sq_fatal(rc);
	return 0;
}

/* --- Writer: fetch (outside transactions) ---------------------------------- */

/* A growable byte buffer for fetch results. */
struct sq_buf {
	uint8_t *p;
	size_t len;
	size_t cap;
};

static int
sq_buf_put(struct sq_buf *b, const void *src, size_t n, size_t *off)
{
	if (b->cap - b->len < n) {
		size_t cap = b->cap != 0 ? b->cap : 4096;
		uint8_t *p;

		while (cap - b->len < n)
			cap *= 2;
		p = realloc(b->p, cap);
		if (p == NULL)
			return TERN_ENOMEM;
		b->p = p;
		b->cap = cap;
	}
	*off = b->len;
	if (n > 0)
		memcpy(b->p + b->len, src, n);
	b->len += n;
	return 0;
}

static int
sq_env_fetch(struct store_backend *be, struct store_req *req)
{
	sqlite3_stmt *st = be->w[W_ENV_FETCH];
	size_t addr_off[STORE_FETCH_MAX], pay_off[STORE_FETCH_MAX];
	/*
	 * Rows are gathered here (22 KiB of the writer's stack), then copied
	 * to an allocation of their exact size, or none: most fetches of a
	 * live or newly logged-in device find nothing, and a calloc of the
	 * whole limit for each (11 KiB at 128) was the largest transient
	 * allocation of a login storm (heaptrack; BENCHMARKS.md, idle
	 * memory).
	 */
	struct store_env tmp[STORE_FETCH_MAX], *envs = tmp;
	struct sq_buf buf = {0};
	uint32_t limit = req->u.fetch.limit;
	uint64_t bytes = 0;
	size_t n = 0, i;
	int rc, err = 0;

	if (limit > STORE_FETCH_MAX)
		limit = STORE_FETCH_MAX; /* the front checked; keep tmp safe */
	sqlite3_bind_int64(st, 1, req->u.fetch.user_id);
	sqlite3_bind_int64(st, 2, req->u.fetch.device_id);
	sqlite3_bind_int64(st, 3, req->u.fetch.after_seq);
	sqlite3_bind_int64(st, 4, (int64_t)limit + 1);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct store_env *e;
		const void *id, *pay, *addr;
		size_t alen, plen;

		pay = sqlite3_column_blob(st, 8);
		plen = (size_t)sqlite3_column_bytes(st, 8);
		if (n == limit ||
		    (n > 0 && bytes + plen > be->lim.fetch_bytes_max)) {
			req->res.more = 1;
			break;
		}
		e = &envs[n];
		memset(e, 0, sizeof(*e));
		e->seq = sqlite3_column_int64(st, 0);
		id = sqlite3_column_blob(st, 1);
		if (id != NULL && sqlite3_column_bytes(st, 1) == STORE_ENV_ID_LEN)
			memcpy(e->env_id, id, STORE_ENV_ID_LEN);
		e->cls = (uint8_t)sqlite3_column_int(st, 2);
		e->sender_device = (uint32_t)sqlite3_column_int64(st, 4);
		e->sent_ms = sqlite3_column_int64(st, 5);
		e->received_ms = sqlite3_column_int64(st, 6);
		e->expires_ms = sqlite3_column_int64(st, 7);
		addr = sqlite3_column_text(st, 3);
		alen = (size_t)sqlite3_column_bytes(st, 3);
		if ((err = sq_buf_put(&buf, addr, alen, &addr_off[n])) != 0 ||
		    (err = sq_buf_put(&buf, "", 1, &i)) != 0)
			break;
		if ((err = sq_buf_put(&buf, pay, plen, &pay_off[n])) != 0)
			break;
		e->payload_len = plen;
		bytes += plen;
		n++;
	}
	sq_reset(st);
	if (err == 0 && rc != SQLITE_ROW && rc != SQLITE_DONE)
		err = sq_fatal(rc);
	if (err == 0 && n > 0 &&
	    (envs = malloc(n * sizeof(*envs))) == NULL)
		err = TERN_ENOMEM;
	if (err != 0) {
		free(buf.p);
		req->res.more = 0;
		return err;
	}
	if (n == 0)
		envs = NULL;
	else
		memcpy(envs, tmp, n * sizeof(*envs));
	/* The buffer no longer moves: offsets become pointers. */
	for (i = 0; i < n; i++) {
		envs[i].sender_addr = (const char *)buf.p + addr_off[i];
		envs[i].payload = buf.p + pay_off[i];
	}
	req->out_envs = envs;
	req->out_buf = buf.p;
	req->res.envs = envs;
	req->res.n_envs = n;
	return 0;
}

/* sq_buf_str appends a text column and its NUL to b. */
static int
sq_buf_str(struct sq_buf *b, sqlite3_stmt *st, int col, size_t *off)
{
	const unsigned char *t = sqlite3_column_text(st, col);
	size_t n = (size_t)sqlite3_column_bytes(st, col), nul;
	int err;

	if ((err = sq_buf_put(b, t, t != NULL ? n : 0, off)) != 0)
		return err;
	return sq_buf_put(b, "", 1, &nul);
}

static int
sq_fed_fetch(struct store_backend *be, struct store_req *req)
{
	sqlite3_stmt *st = be->w[W_FED_FETCH];
	size_t *to_off, *from_off, *pay_off; /* on the heap: a page is big */
	struct sq_buf buf = {0};
	struct store_fed_env *envs;
	uint32_t limit = req->u.fed_fetch.limit;
	uint64_t bytes = 0;
	size_t n = 0, i;
	int rc, err = 0;

	envs = calloc(limit, sizeof(*envs));
	to_off = calloc((size_t)limit * 3, sizeof(*to_off));
	if (envs == NULL || to_off == NULL) {
		free(envs);
		free(to_off);
		return TERN_ENOMEM;
	}
	from_off = to_off + limit;
	pay_off = from_off + limit;
	sq_bind_text(st, 1, req->u.fed_fetch.domain);
	sqlite3_bind_int64(st, 2, req->u.fed_fetch.after_seq);
	sqlite3_bind_int64(st, 3, (int64_t)limit + 1);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct store_fed_env *e;
		const void *pay;
		size_t plen;

		pay = sqlite3_column_blob(st, 12);
		plen = (size_t)sqlite3_column_bytes(st, 12);
		if (n == limit ||
		    (n > 0 && bytes + plen > be->lim.fetch_bytes_max)) {
			req->res.more = 1;
			break;
		}
		e = &envs[n];
		e->seq = sqlite3_column_int64(st, 0);
		sq_blob(e->env_id, STORE_ENV_ID_LEN, st, 1);
		e->to_device = (uint32_t)sqlite3_column_int64(st, 3);
		e->cls = (uint8_t)sqlite3_column_int(st, 4);
		e->sender_user = sqlite3_column_int64(st, 5);
		e->sender_device = (uint32_t)sqlite3_column_int64(st, 7);
		e->sent_ms = sqlite3_column_int64(st, 8);
		e->received_ms = sqlite3_column_int64(st, 9);
		e->expires_ms = sqlite3_column_int64(st, 10);
		e->attempts = (uint32_t)sqlite3_column_int64(st, 11);
		if (sqlite3_column_bytes(st, 13) == STORE_FED_SIG_LEN) {
			e->has_sig = true;
			sq_blob(e->sig, STORE_FED_SIG_LEN, st, 13);
		}
		if ((err = sq_buf_str(&buf, st, 2, &to_off[n])) != 0 ||
		    (err = sq_buf_str(&buf, st, 6, &from_off[n])) != 0 ||
		    (err = sq_buf_put(&buf, pay, plen, &pay_off[n])) != 0)
			break;
		e->payload_len = plen;
		bytes += plen;
		n++;
	}
	sq_reset(st);
	if (err == 0 && rc != SQLITE_ROW && rc != SQLITE_DONE)
		err = sq_fatal(rc);
	if (err != 0) {
		free(envs);
		free(to_off);
		free(buf.p);
		req->res.more = 0;
		return err;
	}
	/* The buffer no longer moves: offsets become pointers. */
	for (i = 0; i < n; i++) {
		envs[i].dest_domain = req->u.fed_fetch.domain;
		envs[i].to_addr = (const char *)buf.p + to_off[i];
		envs[i].sender_addr = (const char *)buf.p + from_off[i];
		envs[i].payload = buf.p + pay_off[i];
	}
	free(to_off);
	req->out_fed = envs;
	req->out_buf = buf.p;
	req->res.fed_envs = envs;
	req->res.n_fed_envs = n;
	return 0;
}

static int
sq_fed_domains(struct store_backend *be, struct store_req *req)
{
	sqlite3_stmt *st = be->w[W_FED_DOMAINS];
	size_t off[STORE_FED_DOMAINS_MAX];
	struct sq_buf buf = {0};
	struct store_fed_domain *doms;
	uint32_t limit = req->u.fed_fetch.limit;
	size_t n = 0, i;
	int rc, err = 0;

	doms = calloc(limit, sizeof(*doms));
	if (doms == NULL)
		return TERN_ENOMEM;
	sq_bind_text(st, 1, req->u.fed_fetch.domain);
	sqlite3_bind_int64(st, 2, (int64_t)limit + 1);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (n == limit) {
			req->res.more = 1;
			break;
		}
		doms[n].count = (uint64_t)sqlite3_column_int64(st, 1);
		doms[n].bytes = (uint64_t)sqlite3_column_int64(st, 2);
		if ((err = sq_buf_str(&buf, st, 0, &off[n])) != 0)
			break;
		n++;
	}
	sq_reset(st);
	if (err == 0 && rc != SQLITE_ROW && rc != SQLITE_DONE)
		err = sq_fatal(rc);
	if (err != 0) {
		free(doms);
		free(buf.p);
		req->res.more = 0;
		return err;
	}
	for (i = 0; i < n; i++)
		doms[i].domain = (const char *)buf.p + off[i];
	req->out_fed = doms;
	req->out_buf = buf.p;
	req->res.fed_domains = doms;
	req->res.n_fed_domains = n;
	return 0;
}

static int
sq_fetch(struct store_backend *be, struct store_req *req)
{
	switch (req->op) {
	case STORE_OP_FETCH:
		return sq_env_fetch(be, req);
	case STORE_OP_FED_FETCH:
		return sq_fed_fetch(be, req);
	case STORE_OP_FED_DOMAINS:
		return sq_fed_domains(be, req);
	default:
		return TERN_EINVAL;
	}
}

/* --- Synchronous lookups (loop thread, rdb) -------------------------------- */

static void
sq_user_row(sqlite3_stmt *st, struct store_user_info *u)
{
	memset(u, 0, sizeof(*u));
	u->user_id = sqlite3_column_int64(st, 0);
	sq_text(u->name, sizeof(u->name), st, 1);
	u->state = sqlite3_column_int(st, 2);
	u->created_ms = sqlite3_column_int64(st, 3);
	u->devices = (uint32_t)sqlite3_column_int64(st, 4);
	u->queued = (uint64_t)sqlite3_column_int64(st, 5);
	u->queued_bytes = (uint64_t)sqlite3_column_int64(st, 6);
}

static void
sq_device_row(sqlite3_stmt *st, struct store_device_info *d)
{
	memset(d, 0, sizeof(*d));
	d->user_id = sqlite3_column_int64(st, 0);
	d->device_id = (uint32_t)sqlite3_column_int64(st, 1);
	sq_key(d->key, st, 2);
	sq_text(d->user_name, sizeof(d->user_name), st, 3);
	sq_text(d->name, sizeof(d->name), st, 4);
	d->created_ms = sqlite3_column_int64(st, 5);
}

static int
sq_user_lookup(struct store_backend *be, const char *name,
    struct store_user_info *out)
{
	sqlite3_stmt *st = be->r[R_USER_BY_NAME];
	int rc;

	sq_bind_text(st, 1, name);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		sq_user_row(st, out);
	sq_reset(st);
	if (rc == SQLITE_ROW)
		return out->state == STORE_USER_DELETED ? TERN_ENOUSER : 0;
	return rc == SQLITE_DONE ? TERN_ENOUSER : sq_fatal(rc);
}

static int
sq_user_list(struct store_backend *be,
    int (*each)(void *arg, const struct store_user_info *u), void *arg)
{
	sqlite3_stmt *st = be->r[R_USER_LIST];
	struct store_user_info u;
	int rc, stop = 0;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		sq_user_row(st, &u);
		if ((stop = each(arg, &u)) != 0)
			break;
	}
	sq_reset(st);
	if (stop != 0)
		return stop;
	return rc == SQLITE_DONE ? 0 : sq_fatal(rc);
}

static int
sq_device_lookup(struct store_backend *be, const char *name,
    uint32_t device_id, uint8_t key_out[STORE_KEY_LEN])
{
	sqlite3_stmt *st = be->r[R_DEVICE_BY_NAME];
	int rc, state = 0;

	sq_bind_text(st, 1, name);
	sqlite3_bind_int64(st, 2, device_id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		sq_key(key_out, st, 0);
		state = sqlite3_column_int(st, 1);
	}
	sq_reset(st);
	if (rc == SQLITE_ROW)
		return state == STORE_USER_ACTIVE ? 0 :
		    state == STORE_USER_DISABLED ? TERN_EDENIED : TERN_ENOUSER;
	return rc == SQLITE_DONE ? TERN_ENOUSER : sq_fatal(rc);
}

static int
sq_device_by_key(struct store_backend *be, const uint8_t key[STORE_KEY_LEN],
    struct store_device_info *out)
{
	sqlite3_stmt *st = be->r[R_DEVICE_BY_KEY];
	int rc, state = 0;

	sq_bind_blob(st, 1, key, STORE_KEY_LEN);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		sq_device_row(st, out);
		state = sqlite3_column_int(st, 6);
	}
	sq_reset(st);
	if (rc == SQLITE_ROW)
		return state == STORE_USER_ACTIVE ? 0 :
		    state == STORE_USER_DISABLED ? TERN_EDENIED : TERN_ENOUSER;
	return rc == SQLITE_DONE ? TERN_ENOUSER : sq_fatal(rc);
}

static int
sq_device_list(struct store_backend *be, int64_t user_id,
    struct store_device_info *out, size_t cap, size_t *n)
{
	sqlite3_stmt *st = be->r[R_DEVICE_LIST];
	size_t i = 0;
	int rc;

	sqlite3_bind_int64(st, 1, user_id);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (i < cap)
			sq_device_row(st, &out[i]);
		i++;
	}
	sq_reset(st);
	*n = i;
	return rc == SQLITE_DONE ? 0 : sq_fatal(rc);
}

static int
sq_queue_usage(struct store_backend *be, int64_t user_id, uint64_t *count,
    uint64_t *bytes)
{
	sqlite3_stmt *st = be->r[R_USAGE];
	int rc;

	sqlite3_bind_int64(st, 1, user_id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*count = (uint64_t)sqlite3_column_int64(st, 0);
		*bytes = (uint64_t)sqlite3_column_int64(st, 1);
	}
	sq_reset(st);
	if (rc == SQLITE_ROW)
		return 0;
	return rc == SQLITE_DONE ? TERN_ENOUSER : sq_fatal(rc);
}

static int
sq_profile_get(struct store_backend *be, int64_t user_id,
    struct store_profile *out)
{
	sqlite3_stmt *st = be->r[R_PROFILE];
	int rc;

	sqlite3_bind_int64(st, 1, user_id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		memset(out, 0, sizeof(*out));
		sq_text(out->display_name, sizeof(out->display_name), st, 0);
		sq_text(out->status_text, sizeof(out->status_text), st, 1);
		out->last_seen_privacy = sqlite3_column_int(st, 2);
		out->last_seen_ms = sqlite3_column_int64(st, 3);
	}
	sq_reset(st);
	if (rc == SQLITE_ROW)
		return 0;
	return rc == SQLITE_DONE ? TERN_ENOUSER : sq_fatal(rc);
}

static int
sq_contacts_list(struct store_backend *be, int64_t user_id,
    int (*each)(void *arg, const char *address), void *arg)
{
	sqlite3_stmt *st = be->r[R_CONTACTS];
	int rc, stop = 0;

	sqlite3_bind_int64(st, 1, user_id);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *a = (const char *)sqlite3_column_text(st, 0);
		if ((stop = each(arg, a != NULL ? a : "")) != 0)
			break;
	}
	sq_reset(st);
	if (stop != 0)
		return stop;
	return rc == SQLITE_DONE ? 0 : sq_fatal(rc);
}

static int
sq_contact_has(struct store_backend *be, int64_t user_id, const char *address)
{
	sqlite3_stmt *st = be->r[R_CONTACT_HAS];
	int rc, found;

	sqlite3_bind_int64(st, 1, user_id);
	sq_bind_text(st, 2, address);
	rc = sq_exists(st, &found);
	if (rc != SQLITE_OK)
		return sq_fatal(rc);
	return found ? 0 : TERN_ENOTFOUND;
}

static int
sq_keys_count(struct store_backend *be, int64_t user_id, uint32_t device_id,
    uint32_t *prekeys, uint32_t *signed_prekey_id)
{
	sqlite3_stmt *st = be->r[R_KEYS_COUNT];
	int rc;

	*prekeys = *signed_prekey_id = 0;
	sqlite3_bind_int64(st, 1, user_id);
	sqlite3_bind_int64(st, 2, device_id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*signed_prekey_id = (uint32_t)sqlite3_column_int64(st, 0);
		*prekeys = (uint32_t)sqlite3_column_int64(st, 1);
	}
	sq_reset(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : sq_fatal(rc);
}

static int
sq_peer_keys(struct store_backend *be, const char *domain,
    uint8_t (*keys)[32], size_t cap, size_t *n)
{
	sqlite3_stmt *st = be->r[R_PEER_KEYS];
	int rc;

	*n = 0;
	sq_bind_text(st, 1, domain);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)cap);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW && *n < cap)
		if (sqlite3_column_bytes(st, 0) == 32)
			memcpy(keys[(*n)++], sqlite3_column_blob(st, 0), 32);
	sq_reset(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : sq_fatal(rc);
}

static int
sq_stats(struct store_backend *be, struct store_stats *out)
{
	sqlite3_stmt *st;
	int64_t v;
	int rc;

	if ((rc = sq_count(be->r[R_STATS_USERS], &v)) != SQLITE_OK)
		return sq_fatal(rc);
	out->users = (uint64_t)v;
	if ((rc = sq_count(be->r[R_STATS_DEVICES], &v)) != SQLITE_OK)
		return sq_fatal(rc);
	out->devices = (uint64_t)v;
	st = be->r[R_STATS_QUEUE];
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		out->queued = (uint64_t)sqlite3_column_int64(st, 0);
		out->queued_bytes = (uint64_t)sqlite3_column_int64(st, 1);
	}
	sq_reset(st);
	if (rc != SQLITE_ROW)
		return sq_fatal(rc);
	st = be->r[R_STATS_FED];
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		out->fed_queued = (uint64_t)sqlite3_column_int64(st, 0);
		out->fed_queued_bytes = (uint64_t)sqlite3_column_int64(st, 1);
	}
	sq_reset(st);
	/* The loop thread owns rdb; the writer published wdb's. */
	out->memory = sq_db_memory(be->rdb) +
	    atomic_load_explicit(&be->wmem, memory_order_relaxed);
	return rc == SQLITE_ROW ? 0 : sq_fatal(rc);
}

const struct store_backend_ops store_sqlite_ops = {
	.name = "sqlite",
	.create = sq_create,
	.open = sq_open,
	.close = sq_close,
	.close_reader = sq_close_reader,
	.begin = sq_begin,
	.exec = sq_exec,
	.commit = sq_commit,
	.rollback = sq_rollback,
	.fetch = sq_fetch,
	.user_lookup = sq_user_lookup,
	.user_list = sq_user_list,
	.device_lookup = sq_device_lookup,
	.device_by_key = sq_device_by_key,
	.device_list = sq_device_list,
	.queue_usage = sq_queue_usage,
	.profile_get = sq_profile_get,
	.contacts_list = sq_contacts_list,
	.contact_has = sq_contact_has,
	.keys_count = sq_keys_count,
	.peer_keys = sq_peer_keys,
	.stats = sq_stats,
};
