// defines: evalplus_harness
//
// The Python program (without its first line, `ARGS = "..."`) that evalplus.cpp runs in the
// sandbox to compute expected outputs and to check solutions the way EvalPlus does.
#pragma once

namespace xft {

const char* evalplus_harness();

}  // namespace xft
