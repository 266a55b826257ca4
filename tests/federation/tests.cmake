tern_test(federation/test_discover.c LIBS ternfed TIMEOUT 60)
tern_test(federation/test_records.c LIBS ternnode TIMEOUT 60)
# test_records runs the real daemon's dns-records command.
if(TARGET ternd AND TARGET test_records)
  add_dependencies(test_records ternd)
endif()
