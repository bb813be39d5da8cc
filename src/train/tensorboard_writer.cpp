#include "train/tensorboard_writer.h"

#include <cerrno>
#include <cstring>

#include "train/crc32c.h"
#include "xft/core/error.h"
#include "xft/core/files.h"

namespace xft {

namespace {

// Protocol buffer wire types (encoding of a field's value).
enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

// Field numbers of tensorflow/core/util/event.proto and tensorflow/core/framework/summary.proto.
constexpr uint32_t kEventWallTime = 1, kEventStep = 2, kEventFileVersion = 3, kEventSummary = 5;
constexpr uint32_t kSummaryValue = 1;
constexpr uint32_t kValueTag = 1, kValueSimpleValue = 2;

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

void put_key(std::string& out, uint32_t field, WireType type) { put_varint(out, (uint64_t{field} << 3) | type); }

// Little-endian whatever the host, as the wire format and TFRecord framing both require.
void put_le(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

void put_bytes(std::string& out, uint32_t field, const std::string& bytes) {
  put_key(out, field, kLengthDelimited);
  put_varint(out, bytes.size());
  out += bytes;
}

void put_double(std::string& out, uint32_t field, double v) {
  uint64_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  put_key(out, field, kFixed64);
  put_le(out, bits, 8);
}

void put_float(std::string& out, uint32_t field, float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  put_key(out, field, kFixed32);
  put_le(out, bits, 4);
}

std::string event_header(double wall_time, int64_t step) {
  std::string e;
  put_double(e, kEventWallTime, wall_time);
  put_key(e, kEventStep, kVarint);
  put_varint(e, static_cast<uint64_t>(step));  // int64: two's complement, as protobuf encodes it
  return e;
}

}  // namespace

TensorboardWriter::TensorboardWriter(std::string path) : path_(std::move(path)) {
  out_.open(path_, std::ios::binary | std::ios::trunc);
  XFT_CHECK(out_.good(), path_, ": cannot create the TensorBoard event file: ", describe_write_error(errno));
  std::string e = event_header(0.0, 0);
  put_bytes(e, kEventFileVersion, "brain.Event:2");
  write_record(e);
}

void TensorboardWriter::add_scalars(int64_t step, double wall_time, const Scalars& values) {
  std::string summary;
  for (const auto& [tag, value] : values) {
    std::string v;
    put_bytes(v, kValueTag, tag);
    put_float(v, kValueSimpleValue, static_cast<float>(value));
    put_bytes(summary, kSummaryValue, v);
  }
  std::string e = event_header(wall_time, step);
  put_bytes(e, kEventSummary, summary);
  write_record(e);
}

void TensorboardWriter::write_record(const std::string& event) {
  std::string length;
  put_le(length, event.size(), 8);
  std::string record = length;
  put_le(record, masked_crc32c(length.data(), length.size()), 4);
  record += event;
  put_le(record, masked_crc32c(event.data(), event.size()), 4);
  out_.write(record.data(), static_cast<std::streamsize>(record.size()));
  out_.flush();
  XFT_CHECK(out_.good(), path_, ": cannot append a TensorBoard event: ", describe_write_error(errno));
}

}  // namespace xft
