# Builds and runs tests/cmake/consumer against mixprec, either installed (MODE=find_package) or as a
# subdirectory (MODE=add_subdirectory). Run with cmake -P; fails on any step's failure.
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})

function(run)
  execute_process(COMMAND ${ARGV} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "command failed (${rc}): ${ARGV}")
  endif()
endfunction()

set(consumer_src ${CMAKE_CURRENT_LIST_DIR}/consumer)
if(MODE STREQUAL "find_package")
  run(${CMAKE_COMMAND} -S ${MIXPREC_SOURCE_DIR} -B ${WORK_DIR}/mixprec-build
      -DMIXPREC_BUILD_TESTS=OFF -DMIXPREC_BUILD_BENCHMARKS=OFF -DMIXPREC_BUILD_EXAMPLES=OFF -DMIXPREC_BUILD_APPS=OFF
      -DMIXPREC_INSTALL=ON -DCMAKE_INSTALL_PREFIX=${WORK_DIR}/prefix)
  run(${CMAKE_COMMAND} --build ${WORK_DIR}/mixprec-build --target mixprec_tool)
  run(${CMAKE_COMMAND} --install ${WORK_DIR}/mixprec-build)
  # The command-line tool is installed beside the headers and runs.
  run(${WORK_DIR}/prefix/bin/mixprec --help)
  run(${CMAKE_COMMAND} -S ${consumer_src} -B ${WORK_DIR}/build -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix)
else()
  run(${CMAKE_COMMAND} -S ${consumer_src} -B ${WORK_DIR}/build -DMIXPREC_SOURCE_DIR=${MIXPREC_SOURCE_DIR})
endif()
run(${CMAKE_COMMAND} --build ${WORK_DIR}/build)
run(${WORK_DIR}/build/consumer)

# ggml's bytes do not depend on the user's flags: the -march=native -ffp-contract=fast build and the
# strict one print the same digests.
foreach(variant user strict)
  execute_process(COMMAND ${WORK_DIR}/build/ggml_digest_${variant} RESULT_VARIABLE rc OUTPUT_VARIABLE digest_${variant})
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "ggml_digest_${variant} failed (${rc})")
  endif()
endforeach()
if(NOT digest_user STREQUAL digest_strict)
  message(FATAL_ERROR "ggml bytes depend on the compiler flags:\n-march=native -ffp-contract=fast:\n${digest_user}\nstrict:\n${digest_strict}")
endif()
message(STATUS "ggml digests equal across flag sets:\n${digest_user}")
