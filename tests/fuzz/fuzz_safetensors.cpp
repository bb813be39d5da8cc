// libFuzzer target: arbitrary bytes as a safetensors file (scripts/fuzz.sh safetensors SECONDS).
// Every input must end as a parsed file whose tensors can all be read, or as an xft::Error:
// never a crash, a sanitizer report, an uncaught exception of another kind, or a hang.
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "xft/core/error.h"
#include "xft/core/safetensors.h"

namespace {

// One file per fuzzing process, rewritten for every input (the reader maps a path).
const std::string& input_path() {
  static const std::string p = (::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp") + std::string("/xft-fuzz-") +
                               std::to_string(::getpid()) + ".safetensors";
  return p;
}

void write_input(const uint8_t* data, size_t size) {
  const int fd = ::open(input_path().c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) __builtin_trap();
  while (size > 0) {
    const ssize_t w = ::write(fd, data, size);
    if (w <= 0) __builtin_trap();
    data += w;
    size -= static_cast<size_t>(w);
  }
  ::close(fd);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  write_input(data, size);
  try {
    auto file = xft::SafetensorsFile::open(input_path());
    uint8_t sink = 0;
    for (const auto& name : file->names()) {
      const auto t = file->get(name);
      // Touch the first and last byte of every tensor: a range past the mapping faults here.
      const auto n = static_cast<size_t>(t.nbytes());
      if (n == 0) continue;
      const auto* p = static_cast<const uint8_t*>(t.data_ptr());
      sink ^= p[0] ^ p[n - 1];
    }
    volatile uint8_t keep = sink;
    (void)keep;
  } catch (const xft::Error&) {
    // A clear rejection is the expected outcome for most inputs.
  }
  return 0;
}
