#!/usr/bin/python3
"""A second, independent implementation of tern's transport (SPEC.md,
"Transport"), built on Debian's python3-dissononce, for interop tests.

    noise_peer.py initiator HOST PORT PATTERN S_PRIV_HEX EXPECT_RS_HEX COUNT [VERSION]
    noise_peer.py responder HOST 0    -       S_PRIV_HEX EXPECT_RS_HEX COUNT

A responder prints "port N" on stdout once it listens; it speaks the
transport version the initiator's preamble names (1 or 2). An initiator
speaks VERSION (default 2). After the handshake each side sends COUNT
messages (interop_message(i, sender)), reads COUNT from the peer and checks
every byte, then the initiator closes. In version 2 small messages go out in
batch frames, and at least one batch frame must arrive (tern sends all its
messages in one turn); in version 1 a batch frame is an error. Exit status
0 only if everything matched. Run it with /usr/bin/python3.
"""
import socket
import struct
import sys

from dissononce.cipher.chachapoly import ChaChaPolyCipher
from dissononce.dh.x25519.x25519 import X25519DH
from dissononce.dh.x25519.private import PrivateKey
from dissononce.dh.x25519.public import PublicKey
from dissononce.dh.keypair import KeyPair
from dissononce.hash.blake2b import Blake2bHash
from dissononce.processing.handshakepatterns.interactive.IK import IKHandshakePattern
from dissononce.processing.handshakepatterns.interactive.XX import XXHandshakePattern
from dissononce.processing.impl.cipherstate import CipherState
from dissononce.processing.impl.handshakestate import HandshakeState
from dissononce.processing.impl.symmetricstate import SymmetricState

FLAG_MORE = 0x01
FLAG_BATCH = 0x02
FRAGMENT_MAX = 65535 - 16 - 1
BATCH_MAX = 16384  # plaintext of a batch frame we build, flags included
PATTERNS = {"XX": (1, XXHandshakePattern), "IK": (2, IKHandshakePattern)}


def interop_message(i, sender):
    """Message i from sender ('I' or 'R'): deterministic bytes, one of them
    larger than a frame so reassembly is exercised."""
    n = 70000 if i == 42 else (i * 37) % 1000 + 1
    seed = (i * 7 + (1 if sender == "I" else 101)) & 0xFF
    return bytes((seed + j) & 0xFF for j in range(n))


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("peer closed after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return bytes(buf)


def recv_frame(sock):
    (n,) = struct.unpack(">H", recv_exact(sock, 2))
    return recv_exact(sock, n)


def send_frame(sock, body):
    sock.sendall(struct.pack(">H", len(body)) + body)


def send_message(sock, cs, msg):
    off = 0
    while True:
        frag = msg[off:off + FRAGMENT_MAX]
        off += len(frag)
        flags = FLAG_MORE if off < len(msg) else 0
        send_frame(sock, cs.encrypt_with_ad(b"", bytes([flags]) + frag))
        if off >= len(msg):
            return


def send_messages(sock, cs, msgs, version):
    """Version 2: runs of small messages share a batch frame (a run of
    one is a plain frame); a message too big for a batch goes alone."""
    batch = []
    size = 1

    def flush():
        nonlocal batch, size
        if len(batch) == 1:
            send_message(sock, cs, batch[0])
        elif batch:
            body = b"".join(struct.pack(">H", len(m)) + m for m in batch)
            send_frame(sock, cs.encrypt_with_ad(b"", bytes([FLAG_BATCH])
                                                + body))
        batch, size = [], 1

    for m in msgs:
        if version < 2 or 1 + 2 + len(m) > BATCH_MAX:
            flush()
            send_message(sock, cs, m)
            continue
        if size + 2 + len(m) > BATCH_MAX:
            flush()
        batch.append(m)
        size += 2 + len(m)
    flush()


class Receiver:
    """Messages from transport frames, whole or batched (SPEC 2.5)."""

    def __init__(self, sock, cs, version):
        self.sock, self.cs, self.version = sock, cs, version
        self.ready = []
        self.batches = 0

    def frame(self):
        plain = self.cs.decrypt_with_ad(b"", recv_frame(self.sock))
        if not plain:
            raise ValueError("empty frame")
        return plain[0], plain[1:]

    def get(self):
        if self.ready:
            return self.ready.pop(0)
        out = bytearray()
        while True:
            flags, body = self.frame()
            if flags & FLAG_BATCH:
                if self.version < 2 or flags != FLAG_BATCH or out:
                    raise ValueError("batch frame not allowed here")
                self.batches += 1
                msgs = []
                while body:
                    if len(body) < 2:
                        raise ValueError("truncated batch")
                    (n,) = struct.unpack(">H", body[:2])
                    if n == 0 or n > len(body) - 2:
                        raise ValueError("bad length in batch")
                    msgs.append(bytes(body[2:2 + n]))
                    body = body[2 + n:]
                if not msgs:
                    raise ValueError("empty batch")
                self.ready = msgs[1:]
                return msgs[0]
            if flags & ~FLAG_MORE:
                raise ValueError("unknown flags")
            out += body
            if not flags & FLAG_MORE:
                return bytes(out)


def new_handshake():
    return HandshakeState(SymmetricState(CipherState(ChaChaPolyCipher()),
                                         Blake2bHash()), X25519DH())


def keypair(priv_hex):
    return X25519DH().generate_keypair(PrivateKey(bytes.fromhex(priv_hex)))


def main():
    role, host, port, pattern, s_hex, rs_hex, count = sys.argv[1:8]
    count = int(count)
    version = int(sys.argv[8]) if len(sys.argv) > 8 else 2
    s = keypair(s_hex)
    expect_rs = bytes.fromhex(rs_hex)
    if role == "initiator":
        code, pat = PATTERNS[pattern]
        sock = socket.create_connection((host, int(port)))
        preamble = bytes([ord("T"), ord("N"), version, code])
        sock.sendall(preamble)
        hs = new_handshake()
        kw = {"s": s}
        if pattern == "IK":
            kw["rs"] = PublicKey(expect_rs)
        hs.initialize(pat(), True, b"tern client" + preamble, **kw)
        buf = bytearray()
        hs.write_message(b"", buf)
        send_frame(sock, bytes(buf))
        if pattern == "XX":
            hs.read_message(recv_frame(sock), bytearray())
            buf = bytearray()
            cs = hs.write_message(b"", buf)
            send_frame(sock, bytes(buf))
        else:
            cs = hs.read_message(recv_frame(sock), bytearray())
        tx, rx, me, peer = cs[0], cs[1], "I", "R"
    else:
        lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lsock.bind((host, 0))
        lsock.listen(1)
        print("port %d" % lsock.getsockname()[1], flush=True)
        lsock.settimeout(30)
        sock, _ = lsock.accept()
        lsock.close()
        preamble = recv_exact(sock, 4)
        if preamble[:2] != b"TN" or preamble[2] not in (1, 2):
            raise ValueError("bad preamble")
        version = preamble[2]
        pattern = {1: "XX", 2: "IK"}[preamble[3]]
        pat = PATTERNS[pattern][1]
        hs = new_handshake()
        hs.initialize(pat(), False, b"tern client" + preamble, s=s)
        hs.read_message(recv_frame(sock), bytearray())
        buf = bytearray()
        cs = hs.write_message(b"", buf)
        send_frame(sock, bytes(buf))
        if cs is None:
            cs = hs.read_message(recv_frame(sock), bytearray())
        tx, rx, me, peer = cs[1], cs[0], "R", "I"
    sock.settimeout(30)
    if hs.rs.data != expect_rs:
        print("remote static key mismatch", file=sys.stderr)
        return 1
    send_messages(sock, tx, [interop_message(i, me) for i in range(count)],
                  version)
    recv = Receiver(sock, rx, version)
    for i in range(count):
        got = recv.get()
        if got != interop_message(i, peer):
            print("message %d differs (%d bytes)" % (i, len(got)),
                  file=sys.stderr)
            return 1
    if version >= 2 and recv.batches == 0:
        print("version 2 but no batch frame arrived", file=sys.stderr)
        return 1
    print("python peer %s %s v%d: %d sent, %d received (%d batch frames), "
          "all match" % (role, pattern, version, count, count, recv.batches),
          flush=True)
    sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
