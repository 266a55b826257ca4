# The benchmark tool runs a short pass against a real node: its pacer,
# its report and its exit status (not the figures: never timed tests).
tern_test(tools/test_bench.c LIBS terncommon TIMEOUT 300)
if(TARGET tern-bench AND TARGET ternd AND TARGET test_bench)
  add_dependencies(test_bench tern-bench ternd)
endif()
