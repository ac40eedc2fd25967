#pragma once

#include <cstdint>
#include <string>

#include "cellgate/v1/output.pb.h"

namespace cellgate::notebook {

// The stored outputs of one cell or one execution, kept with the semantics of nbclient:
//   - consecutive stream outputs of the same name merge into one (text appended);
//   - `Clear(wait=false)` clears at once, `Clear(wait=true)` at the next Append (a display
//     update does not trigger it, as in nbclient and JupyterLab);
//   - `UpdateDisplay` rewrites the data and metadata of every display_data with its display id.
// Outputs are capped at `max_bytes` (OutputBytes of each, summed): an output that does not fit
// is dropped, except a stream, whose text is cut to fit (never inside a UTF-8 character); the
// first time that happens a stderr stream marker `[... output truncated: cap of N bytes
// reached ...]` is appended (merged into a trailing stderr stream) and `truncated()` turns true;
// every later Append is dropped until a clear. The marker is not counted in `size_bytes()`, so
// the stored outputs may exceed the cap by the marker's length.
// Not thread-safe.
class OutputList {
 public:
  // `max_bytes` <= 0 means no cap.
  explicit OutputList(int64_t max_bytes);

  OutputList(const OutputList&) = default;
  OutputList& operator=(const OutputList&) = default;
  OutputList(OutputList&&) = default;
  OutputList& operator=(OutputList&&) = default;

  // Appends an output (applying a pending clear first). Returns false if the cap dropped all of
  // it (a stream cut to fit counts as appended).
  bool Append(v1::Output&& output);
  // The same for an output the caller keeps: only what the list keeps of it is copied.
  bool Append(const v1::Output& output);

  // Clears now (`wait` false), or at the next Append (`wait` true). Clearing also ends the
  // truncation: `truncated()` turns false and the cap's whole budget is available again.
  void Clear(bool wait);

  // Replaces data and metadata of every display_data whose display_id is `update.display_id`
  // (execute_result has no display id in v1). Returns whether any output matched. A
  // replacement that would take the list over the cap is not made (that output keeps its old
  // data) and counts as truncation.
  bool UpdateDisplay(const v1::DisplayUpdate& update);

  // Removes all outputs and forgets a pending clear and the truncation.
  void Reset();
  // Reset, giving the outputs to the caller instead of freeing them.
  google::protobuf::RepeatedPtrField<v1::Output> TakeOutputs();

  // Puts back outputs saved from an OutputList (by a gateway before it restarted) as they were:
  // not merged or capped again, a truncation marker kept as it is.
  void RestoreSaved(google::protobuf::RepeatedPtrField<v1::Output> outputs, bool truncated);

  const google::protobuf::RepeatedPtrField<v1::Output>& outputs() const { return outputs_; }
  bool empty() const { return outputs_.empty(); }
  // The bytes the stored outputs count against the cap (the truncation marker excluded).
  int64_t size_bytes() const { return size_bytes_; }
  int64_t max_bytes() const { return max_bytes_; }
  // True if some output was dropped or cut since the last clear.
  bool truncated() const { return truncated_; }
  // True while a `Clear(wait=true)` waits for the next output.
  bool clear_pending() const { return clear_pending_; }

  // What one output counts against the cap: the stream text; for display_data and
  // execute_result the mime types, their values and the metadata; for an error ename, evalue
  // and the traceback lines.
  static int64_t OutputBytes(const v1::Output& output);

  // The text of the truncation marker for a cap of `max_bytes`.
  static std::string TruncationMarker(int64_t max_bytes);

 private:
  int64_t remaining_bytes() const;
  // How much of a stream's `text` fits within the cap: all of it, or its longest prefix that
  // fits and does not cut a UTF-8 character.
  size_t KeptStreamBytes(const std::string& text) const;
  // Appends a stream output already cut to fit; `whole` false when it was cut (it then also
  // marks the truncation). False when nothing was appended.
  bool AppendStream(v1::Output output, bool whole);
  // Appends `text` to the last output if it is a stream named `name`; false if it is not.
  bool MergeIntoLastStream(v1::StreamName name, const std::string& text);
  void MarkTruncated();

  int64_t max_bytes_;
  google::protobuf::RepeatedPtrField<v1::Output> outputs_;
  int64_t size_bytes_ = 0;
  bool clear_pending_ = false;
  bool truncated_ = false;
};

}  // namespace cellgate::notebook
