tern_test(net/test_net.c LIBS ternnet)
tern_test(net/test_net_interop.c LIBS ternnet TIMEOUT 120)
tern_test(net/test_dns.c LIBS ternnet TIMEOUT 60)
