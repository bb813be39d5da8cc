# Embeds a text file into the library as a C++ function returning it (cmake -P mode):
#   cmake -DINPUT=file -DOUTPUT=file.cpp -DNAME=function -P EmbedText.cmake
# Used for the Python programs the evaluator runs in its sandbox: they live as real .py files in
# the source tree (readable, lintable) and reach the library without being copied by hand.
file(READ "${INPUT}" text)
string(FIND "${text}" ")XFT_EMBED\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${INPUT}: contains the raw-string delimiter )XFT_EMBED\"")
endif()
file(WRITE "${OUTPUT}.tmp"
  "// Generated from ${INPUT} by cmake/EmbedText.cmake; edit that file, not this one.\n"
  "namespace xft {\n"
  "const char* ${NAME}() {\n"
  "  return R\"XFT_EMBED(${text})XFT_EMBED\";\n"
  "}\n"
  "}  // namespace xft\n")
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUTPUT}.tmp")
