# Turns the ```cpp blocks of markdown files (README.md and docs/*.md) into one translation unit, so that
# the usage the documentation shows is compiled (by the readme_snippets target) against the headers as
# they are:
#   cmake "-DMARKDOWN=README.md;docs/reference.md" -DROOT=<source dir> -DOUT=readme_snippets.cpp \
#         -P readme_snippets.cmake
# (-DREADME=FILE, one file, is read as MARKDOWN too.) ROOT, optional, is the folder the files are named
# relative to in comments and diagnostics.
# Each block's #include lines go to the top of the file; the rest of the block becomes the body of a
# function of its own, after tests/support/readme_context.hpp, which declares the names a snippet uses
# without defining them in the documentation (w, x, y, q, p, ...). "= ...;" in a snippet means "your
# value". Each function's comment names its file and line, and a #line directive makes the compiler
# report errors at the markdown file's own lines.
# CMake lists split at ';' (but not at an escaped '\;' or inside [...]), so ';', '\', '[' and ']' are
# read as placeholders and put back on output; every markdown line is one list element.

if(NOT DEFINED MARKDOWN AND DEFINED README)
  set(MARKDOWN "${README}")
endif()
if(NOT MARKDOWN)
  message(FATAL_ERROR "readme_snippets.cmake: no markdown file given (-DMARKDOWN=a.md;b.md)")
endif()
if(NOT OUT)
  message(FATAL_ERROR "readme_snippets.cmake: no output file given (-DOUT=...)")
endif()

set(includes "")
set(bodies "")
set(block 0)
foreach(md IN LISTS MARKDOWN)
  set(name "${md}")
  if(ROOT)
    file(RELATIVE_PATH name "${ROOT}" "${md}")
  endif()
  file(READ "${md}" text)
  string(REPLACE "\\" "@BACKSLASH@" text "${text}")
  string(REPLACE ";" "@SEMICOLON@" text "${text}")
  string(REPLACE "[" "@LBRACKET@" text "${text}")
  string(REPLACE "]" "@RBRACKET@" text "${text}")
  string(REPLACE "\n" ";" lines "${text}")

  set(in_block FALSE)
  set(line_no 0)
  set(open_line 0)
  foreach(line IN LISTS lines)
    math(EXPR line_no "${line_no} + 1")
    if(NOT in_block)
      if(line MATCHES "^```(c\\+\\+|cxx|cc|C\\+\\+|hpp)[ ]*$")
        message(FATAL_ERROR "${name} line ${line_no}: write C++ blocks as ```cpp, so that they are compiled")
      endif()
      if(line MATCHES "^```cpp")
        set(in_block TRUE)
        set(open_line ${line_no})
        math(EXPR block "${block} + 1")
        math(EXPR first "${line_no} + 1")
        string(APPEND bodies "\n// ${name} line ${line_no}\n[[maybe_unused]] void readme_snippet_${block}() {\n"
                             "#line ${first} @QUOTE@${name}@QUOTE@\n")
      endif()
      continue()
    endif()
    if(line MATCHES "^```")
      set(in_block FALSE)
      string(APPEND bodies "}\n")
    elseif(line MATCHES "^#include")
      string(APPEND includes "${line}\n")
      string(APPEND bodies "\n")  # keeps the #line numbering
    else()
      string(REPLACE "= ...@SEMICOLON@" "= readme::your_value()@SEMICOLON@" line "${line}")
      # A line ending in '\' would splice the next one into it (and shift every later line number).
      if(line MATCHES "@BACKSLASH@$")
        message(FATAL_ERROR "${name} line ${line_no}: a C++ line ends in a backslash")
      endif()
      string(APPEND bodies "  ${line}\n")
    endif()
  endforeach()
  if(in_block)
    message(FATAL_ERROR "${name}: the ```cpp block opened at line ${open_line} is not closed")
  endif()
endforeach()
if(block EQUAL 0)
  message(FATAL_ERROR "${MARKDOWN}: no ```cpp block found")
endif()

set(out "// Generated from the markdown files' ```cpp blocks by tests/cmake/readme_snippets.cmake: do not edit.\n")
string(APPEND out "${includes}\n#include @QUOTE@support/readme_context.hpp@QUOTE@\n\n")
string(APPEND out "namespace readme {\n${bodies}\n}  // namespace readme\n")
string(REPLACE "@SEMICOLON@" ";" out "${out}")
string(REPLACE "@LBRACKET@" "[" out "${out}")
string(REPLACE "@RBRACKET@" "]" out "${out}")
string(REPLACE "@QUOTE@" "\"" out "${out}")
string(REPLACE "@BACKSLASH@" "\\" out "${out}")
file(WRITE "${OUT}.tmp" "${out}")
file(COPY_FILE "${OUT}.tmp" "${OUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUT}.tmp")
