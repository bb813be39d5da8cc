// defines: TensorboardWriter (one TensorBoard event file: scalars by step, flushed as written)
//
// The file is TFRecord framing (uint64 length, masked CRC-32C of the length, the bytes, masked
// CRC-32C of the bytes; little-endian) around `Event` protocol buffers: first one carrying
// file_version "brain.Event:2", then one per step with wall_time, step and a Summary of
// {tag, simple_value} values. Those few fields are encoded by hand here because Debian packages
// no C++ TensorBoard writer, and protobuf with TensorFlow's .proto files for five fields would be
// a large dependency and code generator for the build.
#pragma once
#include <cstdint>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace xft {

using Scalars = std::vector<std::pair<std::string, double>>;  // tag -> value, in order

class TensorboardWriter {
 public:
  // Creates `path` (the name must contain "tfevents" for TensorBoard to read it) and writes the
  // file_version event; an unwritable path is an xft::Error naming it.
  explicit TensorboardWriter(std::string path);
  // One Event holding every value at `step`, flushed so that a running TensorBoard sees it.
  // TensorBoard keeps scalars as 32-bit floats (simple_value): values are rounded to float.
  void add_scalars(int64_t step, double wall_time, const Scalars& values);
  const std::string& path() const { return path_; }

 private:
  void write_record(const std::string& event);
  std::string path_;
  std::ofstream out_;
};

}  // namespace xft
