# tests/client: the client library against a fake node on loopback, and
# the tern CLI end to end against a real ternd.
# Guarded so that the tree still configures before the top-level
# CMakeLists.txt has add_subdirectory(client).
if(TARGET ternclient)
  tern_test(client/test_client.c LIBS ternclient)
else()
  message(WARNING "tests/client skipped: no ternclient target (add_subdirectory(client))")
endif()
if(TARGET tern AND TARGET ternd)
  tern_test(client/test_e2e.c LIBS terncommon TIMEOUT 300)
  add_dependencies(test_e2e tern ternd)
endif()
if(TARGET ternapp)
  tern_test(client/test_pt.c LIBS ternapp)
endif()
# The terminal chat, driven under a private tmux server (tools/deps.sh
# installs tmux).
if(TARGET tern AND TARGET ternd)
  tern_test(client/test_tui.c LIBS terncommon TIMEOUT 300)
  add_dependencies(test_tui tern ternd)
endif()
