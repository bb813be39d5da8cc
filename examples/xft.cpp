// xft: XFT: upcycle the base into an MoE with a shared expert, instruction-tune it, merge it back (Eq. 5-6).
//   xft --config configs/tiny.json [--set key=value ...] [--resume]
#include "driver.h"

int main(int argc, char** argv) {
  return xft::driver::main(
      argc, argv, "xft",
      "XFT: upcycle the base into an MoE with a shared expert, instruction-tune it, merge it back (Eq. 5-6)",
      xft::run_xft);
}
