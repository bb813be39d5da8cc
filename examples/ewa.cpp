// ewa: experts weights averaging (the EWA baseline, paper A.2).
//   ewa --config configs/tiny.json [--set key=value ...] [--resume]
#include "driver.h"

int main(int argc, char** argv) {
  return xft::driver::main(argc, argv, "ewa", "experts weights averaging (the EWA baseline, paper A.2)", xft::run_ewa);
}
