// defines: evalplus_harness
//
// The Python program (without its first line, `ARGS = "..."`) that evalplus.cpp runs in the
// sandbox to compute expected outputs and to check solutions the way EvalPlus does. Its text is
// evalplus_harness.py, embedded at build time (cmake/EmbedText.cmake).
#pragma once

namespace xft {

const char* evalplus_harness();

}  // namespace xft
