#include "server/notebook/output_list.h"

#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/common/huge_pages.h"

namespace cellgate::notebook {
namespace {

using MimeBundle = google::protobuf::Map<std::string, std::string>;

int64_t BundleBytes(const MimeBundle& data, const std::string& metadata) {
  int64_t bytes = static_cast<int64_t>(metadata.size());
  for (const auto& [mime_type, value] : data) {
    bytes += static_cast<int64_t>(mime_type.size() + value.size());
  }
  return bytes;
}

// The largest length <= `max_bytes` that does not cut `text` inside a UTF-8 character.
size_t Utf8Prefix(const std::string& text, size_t max_bytes) {
  if (max_bytes >= text.size()) return text.size();
  size_t length = max_bytes;
  while (length > 0 && (static_cast<unsigned char>(text[length]) & 0xC0) == 0x80) --length;
  return length;
}

}  // namespace

OutputList::OutputList(int64_t max_bytes) : max_bytes_(max_bytes) {}

int64_t OutputList::OutputBytes(const v1::Output& output) {
  switch (output.output_case()) {
    case v1::Output::kStream:
      return static_cast<int64_t>(output.stream().text().size());
    case v1::Output::kDisplayData:
      return BundleBytes(output.display_data().data(), output.display_data().metadata());
    case v1::Output::kExecuteResult:
      return BundleBytes(output.execute_result().data(), output.execute_result().metadata());
    case v1::Output::kError: {
      const v1::ErrorOutput& error = output.error();
      int64_t bytes = static_cast<int64_t>(error.ename().size() + error.evalue().size());
      for (const std::string& line : error.traceback()) bytes += static_cast<int64_t>(line.size());
      return bytes;
    }
    case v1::Output::OUTPUT_NOT_SET:
      break;
  }
  return 0;
}

std::string OutputList::TruncationMarker(int64_t max_bytes) {
  return absl::StrCat("[... output truncated: cap of ", max_bytes, " bytes reached ...]\n");
}

int64_t OutputList::remaining_bytes() const {
  if (max_bytes_ <= 0) return std::numeric_limits<int64_t>::max();
  return max_bytes_ > size_bytes_ ? max_bytes_ - size_bytes_ : 0;
}

bool OutputList::MergeIntoLastStream(v1::StreamName name, const std::string& text) {
  if (outputs_.empty()) return false;
  v1::Output& last = *outputs_.rbegin();
  if (!last.has_stream() || last.stream().name() != name) return false;
  last.mutable_stream()->mutable_text()->append(text);
  return true;
}

void OutputList::RestoreSaved(google::protobuf::RepeatedPtrField<v1::Output> outputs,
                              bool truncated) {
  Reset();
  outputs_ = std::move(outputs);
  for (const v1::Output& output : outputs_) size_bytes_ += OutputBytes(output);
  truncated_ = truncated;
}

void OutputList::MarkTruncated() {
  if (truncated_) return;
  truncated_ = true;
  if (!outputs_.empty() && outputs_.rbegin()->has_stream() &&
      outputs_.rbegin()->stream().name() == v1::STREAM_NAME_STDERR) {
    std::string* text = outputs_.rbegin()->mutable_stream()->mutable_text();
    if (!text->empty() && text->back() != '\n') text->push_back('\n');
    text->append(TruncationMarker(max_bytes_));
    return;
  }
  v1::StreamOutput* stream = outputs_.Add()->mutable_stream();
  stream->set_name(v1::STREAM_NAME_STDERR);
  stream->set_text(TruncationMarker(max_bytes_));
}

size_t OutputList::KeptStreamBytes(const std::string& text) const {
  const int64_t remaining = remaining_bytes();
  if (static_cast<int64_t>(text.size()) <= remaining) return text.size();
  return Utf8Prefix(text, static_cast<size_t>(remaining));
}

bool OutputList::AppendStream(v1::Output output, bool whole) {
  const v1::StreamOutput& stream = output.stream();
  const bool appended = !stream.text().empty() || whole;
  size_bytes_ += static_cast<int64_t>(stream.text().size());
  if (appended && !MergeIntoLastStream(stream.name(), stream.text())) {
    *outputs_.Add() = std::move(output);
  }
  if (!whole) MarkTruncated();
  return appended;
}

bool OutputList::Append(v1::Output&& output) {
  if (clear_pending_) Reset();
  if (truncated_) return false;
  if (output.has_stream()) {
    std::string* text = output.mutable_stream()->mutable_text();
    const size_t kept = KeptStreamBytes(*text);
    const bool whole = kept == text->size();
    text->resize(kept);
    return AppendStream(std::move(output), whole);
  }
  const int64_t bytes = OutputBytes(output);
  if (bytes > remaining_bytes()) {
    MarkTruncated();
    return false;
  }
  size_bytes_ += bytes;
  *outputs_.Add() = std::move(output);
  return true;
}

bool OutputList::Append(const v1::Output& output) {
  if (clear_pending_) Reset();
  if (truncated_) return false;
  if (output.has_stream()) {
    // Only the part within the cap is copied: a 50 MB write to a list capped at 1 MB copies
    // 1 MB, into huge pages when that is megabytes (server/common/huge_pages.h).
    const std::string& text = output.stream().text();
    const size_t kept = KeptStreamBytes(text);
    v1::Output copy;
    copy.mutable_stream()->set_name(output.stream().name());
    std::string* kept_text = copy.mutable_stream()->mutable_text();
    common::ReserveInHugePages(*kept_text, kept);
    kept_text->append(text.data(), kept);
    return AppendStream(std::move(copy), kept == text.size());
  }
  if (OutputBytes(output) > remaining_bytes()) {
    MarkTruncated();
    return false;
  }
  return Append(v1::Output(output));
}

void OutputList::Clear(bool wait) {
  if (wait) {
    clear_pending_ = true;
  } else {
    Reset();
  }
}

bool OutputList::UpdateDisplay(const v1::DisplayUpdate& update) {
  if (update.display_id().empty()) return false;
  const int64_t new_bytes = BundleBytes(update.data(), update.metadata());
  bool matched = false;
  bool over_cap = false;
  for (v1::Output& output : outputs_) {
    if (!output.has_display_data() || output.display_data().display_id() != update.display_id()) {
      continue;
    }
    matched = true;
    v1::DisplayData* display = output.mutable_display_data();
    const int64_t old_bytes = BundleBytes(display->data(), display->metadata());
    if (new_bytes - old_bytes > remaining_bytes()) {
      over_cap = true;
      continue;
    }
    *display->mutable_data() = update.data();
    display->set_metadata(update.metadata());
    size_bytes_ += new_bytes - old_bytes;
  }
  if (over_cap) MarkTruncated();  // after the loop: it may add an output
  return matched;
}

void OutputList::Reset() {
  outputs_.Clear();
  size_bytes_ = 0;
  clear_pending_ = false;
  truncated_ = false;
}

google::protobuf::RepeatedPtrField<v1::Output> OutputList::TakeOutputs() {
  google::protobuf::RepeatedPtrField<v1::Output> taken;
  taken.Swap(&outputs_);
  Reset();
  return taken;
}

}  // namespace cellgate::notebook
