tern_test(crypto/test_noise_vectors.c LIBS terncrypto)
tern_test(crypto/test_chan.c LIBS terncrypto)
tern_test(crypto/test_sig.c LIBS terncrypto)
tern_test(crypto/test_nodesig.c LIBS terncrypto)
