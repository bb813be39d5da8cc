// sft: dense instruction tuning (the SFT baseline).
//   sft --config configs/tiny.json [--set key=value ...] [--resume]
#include "driver.h"

int main(int argc, char** argv) {
  return xft::driver::main(argc, argv, "sft", "dense instruction tuning (the SFT baseline)", xft::run_sft);
}
