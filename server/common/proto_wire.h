#pragma once

// Writing a length-delimited field (a message) whose bytes are already serialized, straight
// into a buffer. A parser reads fields in any order and merges a message field given twice, so
// such bytes can be appended to a message's own serialization.

#include <cstddef>
#include <cstdint>

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/wire_format_lite.h>

namespace cellgate::common {

// The bytes of the tag and length that head field `field` of `size` bytes.
inline size_t LengthDelimitedHeaderSize(int field, size_t size) {
  using google::protobuf::internal::WireFormatLite;
  return WireFormatLite::TagSize(field, WireFormatLite::TYPE_MESSAGE) +
         google::protobuf::io::CodedOutputStream::VarintSize64(size);
}

// Writes that tag and length at `at`; returns the end of what it wrote.
inline uint8_t* WriteLengthDelimitedHeader(int field, size_t size, uint8_t* at) {
  using google::protobuf::internal::WireFormatLite;
  at = WireFormatLite::WriteTagToArray(field, WireFormatLite::WIRETYPE_LENGTH_DELIMITED, at);
  return google::protobuf::io::CodedOutputStream::WriteVarint64ToArray(size, at);
}

}  // namespace cellgate::common
