# libFuzzer targets (-DTERN_FUZZ=ON, clang). Each has a committed seed
# corpus in fuzz/corpus/<name without fuzz_>/. .ci/run runs each of them.
foreach(t fuzz_msg fuzz_frame fuzz_noise_responder fuzz_http fuzz_pt fuzz_sig
    fuzz_dnsans)
  add_executable(${t} ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/${t}.c)
  if(t STREQUAL fuzz_http)
    target_link_libraries(${t} PRIVATE ternnode)
  elseif(t STREQUAL fuzz_pt)
    target_link_libraries(${t} PRIVATE ternapp)
  elseif(t STREQUAL fuzz_dnsans)
    target_link_libraries(${t} PRIVATE ternfed)
  else()
    target_link_libraries(${t} PRIVATE terncrypto)
  endif()
  target_link_options(${t} PRIVATE -fsanitize=fuzzer)
  set_target_properties(${t} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR})
endforeach()
# Writes the channel seed corpora from real, deterministic runs.
add_executable(gen_chan_seeds ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/gen_chan_seeds.c)
target_link_libraries(gen_chan_seeds PRIVATE terncrypto)
# Writes the message seed corpus, one valid encoding per type.
add_executable(gen_msg_seeds ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/gen_msg_seeds.c)
target_link_libraries(gen_msg_seeds PRIVATE terncommon)
