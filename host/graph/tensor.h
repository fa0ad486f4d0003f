// Dense row-major tensors. The FP64 reference works on Tensor (double); the precision
// modes work on TensorF (float values that are exactly representable in the mode's storage).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace divscope {

using Shape = std::vector<int64_t>;

int64_t numel(const Shape& s);
std::string shape_str(const Shape& s);          // "[2, 3, 4]"
Shape strides_of(const Shape& s);               // row-major element strides

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
