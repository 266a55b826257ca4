# tests/client: the client library against a fake node on loopback.
# Guarded so that the tree still configures before the top-level
# CMakeLists.txt has add_subdirectory(client).
if(TARGET ternclient)
  tern_test(client/test_client.c LIBS ternclient)
else()
  message(WARNING "tests/client skipped: no ternclient target (add_subdirectory(client))")
endif()
