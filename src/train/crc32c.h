// defines: crc32c, masked_crc32c (the checksums of TensorBoard's event files)
//
// CRC-32C (Castagnoli, the polynomial of iSCSI, RFC 3720) guards each record of a TFRecord file;
// TensorBoard stores it "masked" (rotated and offset) so that a CRC of data holding CRCs stays
// well mixed. Debian 12 packages no CRC-32C library for C++ (no libcrc32c-dev; zlib's crc32 is
// another polynomial), so this is the table-driven byte-at-a-time form: event files are small.
#pragma once
#include <cstddef>
#include <cstdint>

namespace xft {

uint32_t crc32c(const void* data, size_t size);
// ((crc >> 15) | (crc << 17)) + 0xa282ead8, as TFRecord writers and readers agree.
uint32_t masked_crc32c(const void* data, size_t size);

}  // namespace xft
