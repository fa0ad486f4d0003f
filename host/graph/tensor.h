// Dense row-major tensors. The FP64 reference works on Tensor (double); the precision
// modes work on TensorF (float values that are exactly representable in the mode's storage).
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace divscope {

using Shape = std::vector<int64_t>;

// Sizes come from files (dataset dims, shape attributes, strides, scale factors): every product
// and sum of them is checked, because a wrapped int64 makes a negative or zero dim that later
// divides by zero or passes a check it should fail. The error is a std::overflow_error whose
// message says what overflowed; readers and shape rules add the file and the layer.
class SizeOverflow : public std::overflow_error {
 public:
  using std::overflow_error::overflow_error;
};
// a * b and a + b, or SizeOverflow "<what> overflows int64 (a * b)".
int64_t checked_mul(int64_t a, int64_t b, const std::string& what);
int64_t checked_add(int64_t a, int64_t b, const std::string& what);

int64_t numel(const Shape& s);                  // checked: SizeOverflow past 2^63 - 1
std::string shape_str(const Shape& s);          // "[2, 3, 4]"
Shape strides_of(const Shape& s);               // row-major element strides (checked)

// The most bytes one tensor may take: the machine's physical memory. A size read from a file
// whose FP64 tensor would need more (a declared dataset, a layer's output for the recorded
// batch) is refused as bad input before anything is allocated (docs/format.md, Sizes).
int64_t host_memory_bytes();
// Bytes of `elements` values of `elem_bytes` each, saturated at INT64_MAX (for messages and
// comparisons with host_memory_bytes()).
int64_t saturating_bytes(int64_t elements, int64_t elem_bytes);
std::string bytes_str(int64_t bytes);           // "8.0 TiB", "19.4 KiB", "512 B"

template <class T>
struct BasicTensor {
  Shape shape;
  std::vector<T> data;

  BasicTensor() = default;
  explicit BasicTensor(Shape s, T fill = T(0)) : shape(std::move(s)), data(numel(shape), fill) {}
  int64_t size() const { return static_cast<int64_t>(data.size()); }
  int64_t dim(int i) const { return shape[i < 0 ? shape.size() + i : i]; }
  int rank() const { return static_cast<int>(shape.size()); }
  T* ptr() { return data.data(); }
  const T* ptr() const { return data.data(); }
};

using Tensor = BasicTensor<double>;
using TensorF = BasicTensor<float>;

}  // namespace divscope
