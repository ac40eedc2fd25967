#include "server/api/raw_message.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream.h>
#include <grpc/slice.h>
#include <grpcpp/support/proto_buffer_reader.h>
#include <grpcpp/support/slice.h>

#include <algorithm>
#include <utility>
#include <vector>

namespace cellgate::api {
namespace {

using Owner = std::shared_ptr<const google::protobuf::MessageLite>;

// Blocks for what is copied: no bigger than what is left to write, and small enough that a
// string longer than a block's rest is aliased rather than copied.
constexpr size_t kMinBlockBytes = 256;
constexpr size_t kMaxBlockBytes = 64 * 1024;
// A message this small is copied whole into one slice: sharing would save next to nothing.
constexpr size_t kWholeCopyBytes = 4 * 1024;

void ReleaseOwner(void* owner) { delete static_cast<Owner*>(owner); }

// Collects the serialized message as gRPC slices: blocks it allocates for the bytes protobuf
// copies, and slices of the message's own memory for what protobuf hands over by alias.
class SliceSink final : public google::protobuf::io::ZeroCopyOutputStream {
 public:
  SliceSink(Owner owner, size_t total_bytes)
      : owner_(std::move(owner)), total_bytes_(total_bytes) {}
  ~SliceSink() override {
    if (block_open_) grpc_slice_unref(block_);
  }
  SliceSink(const SliceSink&) = delete;
  SliceSink& operator=(const SliceSink&) = delete;

  bool Next(void** data, int* size) override {
    CloseBlock();
    const size_t left = total_bytes_ > byte_count_ ? total_bytes_ - byte_count_ : 0;
    const size_t block_bytes = std::clamp(left, kMinBlockBytes, kMaxBlockBytes);
    block_ = grpc_slice_malloc(block_bytes);
    block_open_ = true;
    block_used_ = block_bytes;
    byte_count_ += block_bytes;
    *data = GRPC_SLICE_START_PTR(block_);
    *size = static_cast<int>(block_bytes);
    return true;
  }

  void BackUp(int count) override {
    block_used_ -= static_cast<size_t>(count);
    byte_count_ -= static_cast<size_t>(count);
  }

  int64_t ByteCount() const override { return static_cast<int64_t>(byte_count_); }

  bool AllowsAliasing() const override { return true; }

  bool WriteAliasedRaw(const void* data, int size) override {
    CloseBlock();
    // gRPC never writes through a slice it sends; the cast only fits grpc_slice's type.
    slices_.emplace_back(const_cast<void*>(data), static_cast<size_t>(size), &ReleaseOwner,
                         new Owner(owner_));
    byte_count_ += static_cast<size_t>(size);
    return true;
  }

  grpc::ByteBuffer Finish() {
    CloseBlock();
    return grpc::ByteBuffer(slices_.data(), slices_.size());
  }

 private:
  void CloseBlock() {
    if (!block_open_) return;
    block_open_ = false;
    if (block_used_ == 0) {
      grpc_slice_unref(block_);
      return;
    }
    // The trimmed slice takes over the block's reference.
    slices_.emplace_back(grpc_slice_sub_no_ref(block_, 0, block_used_), grpc::Slice::STEAL_REF);
  }

  const Owner owner_;
  const size_t total_bytes_;
  size_t byte_count_ = 0;
  std::vector<grpc::Slice> slices_;
  grpc_slice block_;
  bool block_open_ = false;
  size_t block_used_ = 0;
};

}  // namespace

grpc::ByteBuffer ByteBufferSharingStrings(Owner message) {
  const size_t total_bytes = message->ByteSizeLong();
  if (total_bytes <= kWholeCopyBytes) {
    // Most events (a printed line, a status) are small: one slice, as gRPC itself makes.
    grpc_slice slice = grpc_slice_malloc(total_bytes);
    message->SerializeWithCachedSizesToArray(GRPC_SLICE_START_PTR(slice));
    grpc::Slice whole(slice, grpc::Slice::STEAL_REF);
    return grpc::ByteBuffer(&whole, 1);
  }
  SliceSink sink(message, total_bytes);
  {
    google::protobuf::io::CodedOutputStream coded(&sink);
    coded.EnableAliasing(true);
    message->SerializeWithCachedSizes(&coded);
  }  // the coded stream hands back what it did not use before the sink closes its block
  return sink.Finish();
}

grpc::ByteBuffer ByteBufferOwning(std::string bytes) {
  auto* owned = new std::string(std::move(bytes));
  grpc::Slice slice(
      owned->data(), owned->size(), [](void* string) { delete static_cast<std::string*>(string); },
      owned);
  return grpc::ByteBuffer(&slice, 1);
}

bool ParseByteBuffer(const grpc::ByteBuffer& buffer, google::protobuf::MessageLite& message) {
  grpc::ByteBuffer readable(buffer);  // shares the slices; the reader consumes its own copy
  grpc::ProtoBufferReader reader(&readable);
  return reader.status().ok() && message.ParseFromZeroCopyStream(&reader);
}

}  // namespace cellgate::api
