// defines: AtomicWriter (a file written whole or not at all)
//
// Internal to core: write_file_atomic and the safetensors writer share it. Every write, fsync
// and close result is checked, so a full disk or a file size limit surfaces as an xft::Error
// naming the file instead of a silently short file.
#pragma once
#include <string>

namespace xft {

// Writes to `path.tmp.<pid>`; commit() fsyncs it, closes it and renames it over `path`. A writer
// destroyed before commit (an error on the way) removes its temporary, so nothing partial stays.
class AtomicWriter {
 public:
  explicit AtomicWriter(const std::string& path);
  ~AtomicWriter();
  AtomicWriter(const AtomicWriter&) = delete;
  AtomicWriter& operator=(const AtomicWriter&) = delete;
  void write(const void* data, size_t n);
  void commit();
  const std::string& temporary() const { return tmp_; }

 private:
  std::string path_, tmp_;
  int fd_ = -1;
  bool committed_ = false;
};

}  // namespace xft
