# Turns README.md's ```cpp blocks into one translation unit, so that the usage the README shows is
# compiled (by the readme_snippets target) against the headers as they are:
#   cmake -DREADME=README.md -DOUT=readme_snippets.cpp -P readme_snippets.cmake
# Each block's #include lines go to the top of the file; the rest of the block becomes the body of a
# function of its own, after tests/support/readme_context.hpp, which declares the names a snippet uses
# without defining them in the README (w, x, y, q, p, ...). "= ...;" in a snippet means "your value".
# CMake lists split at ';', so the text is read with ';' replaced and put back on output.

file(READ "${README}" text)
string(REPLACE ";" "@SEMICOLON@" text "${text}")
string(REPLACE "\n" ";" lines "${text}")

set(includes "")
set(bodies "")
set(in_block FALSE)
set(block 0)
set(line_no 0)
foreach(line IN LISTS lines)
  math(EXPR line_no "${line_no} + 1")
  if(NOT in_block)
    if(line MATCHES "^```cpp")
      set(in_block TRUE)
      math(EXPR block "${block} + 1")
      string(APPEND bodies "\n// README.md line ${line_no}\n[[maybe_unused]] void readme_snippet_${block}() {\n")
    endif()
    continue()
  endif()
  if(line MATCHES "^```")
    set(in_block FALSE)
    string(APPEND bodies "}\n")
  elseif(line MATCHES "^#include")
    string(APPEND includes "${line}\n")
  else()
    string(REPLACE "= ...@SEMICOLON@" "= readme::your_value()@SEMICOLON@" line "${line}")
    string(APPEND bodies "  ${line}\n")
  endif()
endforeach()
if(in_block)
  message(FATAL_ERROR "README.md: the last ```cpp block is not closed")
endif()
if(block EQUAL 0)
  message(FATAL_ERROR "README.md: no ```cpp block found")
endif()

set(out "// Generated from README.md by tests/cmake/readme_snippets.cmake: do not edit.\n${includes}\n")
string(APPEND out "#include \"support/readme_context.hpp\"\n\nnamespace readme {\n${bodies}\n}  // namespace readme\n")
string(REPLACE "@SEMICOLON@" ";" out "${out}")
file(WRITE "${OUT}.tmp" "${out}")
file(COPY_FILE "${OUT}.tmp" "${OUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUT}.tmp")
