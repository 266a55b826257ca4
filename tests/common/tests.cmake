# tests/common: terncommon (error codes, buffers, identifiers, messages).
tern_test(common/test_buf.c LIBS terncommon)
tern_test(common/test_ident.c LIBS terncommon)
tern_test(common/test_msg.c LIBS terncommon)
tern_test(common/test_slab.c LIBS terncommon)
