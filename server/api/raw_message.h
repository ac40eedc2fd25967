#pragma once

#include <memory>
#include <string>

#include <google/protobuf/message_lite.h>
#include <grpcpp/support/byte_buffer.h>

namespace cellgate::api {

// Messages of the methods the gateway serves raw (as grpc::ByteBuffer, not as protobuf types).

// The message serialized for gRPC without copying its long strings: each singular string or
// bytes field too long for the block being written (a stream's text) becomes a slice of the
// buffer that points into the message itself, and such slices hold a reference to `message`
// until gRPC is done with them. The rest (tags, lengths, short fields, map entries, repeated
// strings: protobuf copies those) is written into blocks of its own; a message of at most
// 4 KiB is copied whole into one slice. The bytes are those of `message->SerializeAsString()`.
//
// A StreamOutputs follower writes every event this way: a 50 MB output goes to the socket from
// where the session stored it, and a thousand followers of one kernel share its text instead of
// each serializing a copy.
grpc::ByteBuffer ByteBufferSharingStrings(
    std::shared_ptr<const google::protobuf::MessageLite> message);

// `bytes` as a byte buffer, without a copy: its one slice owns them.
grpc::ByteBuffer ByteBufferOwning(std::string bytes);

// Parses a request a raw method received into `message`; false if the bytes are not one.
bool ParseByteBuffer(const grpc::ByteBuffer& buffer, google::protobuf::MessageLite& message);

}  // namespace cellgate::api
