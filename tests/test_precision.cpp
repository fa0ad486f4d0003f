// host/precision.h: the roundings that define the modes, bit for bit.
// Hand-known values first, then PyTorch's own casts as the oracle for fp16/bf16 and an independent
// arithmetic definition for tf32, over random bit patterns (every exponent, NaN and inf included).
#include <gtest/gtest.h>

#include <unistd.h>

#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "precision.h"
#include "reference/round_bulk.h"

using namespace divscope;

namespace {

float f(uint32_t bits) { return bits_f32(bits); }
uint32_t tf32_bits(uint32_t in) { return f32_bits(round_tf32(f(in))); }
bool is_nan_half(uint16_t h) { return (h & 0x7c00u) == 0x7c00u && (h & 0x03ffu) != 0; }
bool is_nan_bf16(uint16_t b) { return (b & 0x7f80u) == 0x7f80u && (b & 0x007fu) != 0; }

// TF32 by its definition, in double: scale |x| so that the kept bits are the integer part, round
// half away from zero, scale back; overflow past FLT_MAX is infinity. Shares no code with
// round_tf32.
uint32_t tf32_reference(uint32_t in) {
  const float x = f(in);
  if (std::isnan(x)) return 0x7fc00000u;  // compared only as "is NaN"
  if (std::isinf(x) || x == 0.0f) return in;
  const double a = std::fabs(static_cast<double>(x));
  const int e = std::max(static_cast<int>(std::floor(std::log2(a))), -126);
  const double unit = std::ldexp(1.0, e - 10);
  const double r = std::floor(a / unit + 0.5) * unit;
  const double v = r > FLT_MAX ? INFINITY : r;
  return f32_bits(static_cast<float>(std::signbit(x) ? -v : v));
}

}  // namespace

TEST(Precision, ModeNames) {
  for (Mode m : {Mode::fp64, Mode::fp32, Mode::tf32, Mode::fp16, Mode::bf16, Mode::strict}) {
    Mode back = Mode::fp64;
    ASSERT_TRUE(parse_mode(mode_name(m), &back)) << mode_name(m);
    EXPECT_EQ(back, m);
  }
  Mode untouched = Mode::bf16;
  EXPECT_FALSE(parse_mode("FP16", &untouched));
  EXPECT_FALSE(parse_mode("", &untouched));
  EXPECT_EQ(untouched, Mode::bf16);
}

TEST(Precision, Fp16KnownValues) {
  EXPECT_EQ(float_to_half_bits(1.0f), 0x3c00);
  EXPECT_EQ(float_to_half_bits(-2.0f), 0xc000);
  EXPECT_EQ(float_to_half_bits(0.0f), 0x0000);
  EXPECT_EQ(float_to_half_bits(-0.0f), 0x8000);
  EXPECT_EQ(float_to_half_bits(65504.0f), 0x7bff);
  EXPECT_EQ(float_to_half_bits(65505.0f), 0x7bff);
  EXPECT_EQ(float_to_half_bits(f(0x477fefffu)), 0x7bff);  // just below 65520
  EXPECT_EQ(float_to_half_bits(65520.0f), 0x7c00);        // the tie goes to even = infinity
  EXPECT_EQ(float_to_half_bits(-65520.0f), 0xfc00);
  EXPECT_EQ(float_to_half_bits(FLT_MAX), 0x7c00);
  EXPECT_EQ(float_to_half_bits(INFINITY), 0x7c00);
  EXPECT_EQ(float_to_half_bits(-INFINITY), 0xfc00);
  EXPECT_TRUE(is_nan_half(float_to_half_bits(NAN)));
  EXPECT_TRUE(is_nan_half(float_to_half_bits(f(0x7f800001u))));  // payload only in dropped bits
  EXPECT_TRUE(is_nan_half(float_to_half_bits(f(0xff800001u))));
  // Subnormals: min 2^-24, max 1023 * 2^-24; below half the minimum -> 0.
  EXPECT_EQ(float_to_half_bits(std::ldexp(1.0f, -24)), 0x0001);
  EXPECT_EQ(float_to_half_bits(std::ldexp(1023.0f, -24)), 0x03ff);
  EXPECT_EQ(float_to_half_bits(std::ldexp(1.0f, -14)), 0x0400);   // min normal
  EXPECT_EQ(float_to_half_bits(f(0x387fffffu)), 0x0400);          // rounds up into the normals
  EXPECT_EQ(float_to_half_bits(std::ldexp(1.0f, -25)), 0x0000);   // tie -> even (0)
  EXPECT_EQ(float_to_half_bits(f(0x33000001u)), 0x0001);          // just above the tie
  EXPECT_EQ(float_to_half_bits(std::ldexp(3.0f, -25)), 0x0002);   // 1.5 units: tie -> 2
  EXPECT_EQ(float_to_half_bits(std::ldexp(5.0f, -25)), 0x0002);   // 2.5 units: tie -> 2
  EXPECT_EQ(float_to_half_bits(-std::ldexp(5.0f, -25)), 0x8002);
  EXPECT_EQ(float_to_half_bits(f(0x00000001u)), 0x0000);          // float subnormal
  // Normal ties: 1 + 2^-11 is halfway between 1 and 1 + 2^-10.
  EXPECT_EQ(float_to_half_bits(f(0x3f801000u)), 0x3c00);  // down to even
  EXPECT_EQ(float_to_half_bits(f(0x3f803000u)), 0x3c02);  // up to even
  EXPECT_EQ(float_to_half_bits(f(0x3f801001u)), 0x3c01);
  EXPECT_EQ(float_to_half_bits(f(0x3f800fffu)), 0x3c00);
  EXPECT_EQ(round_fp16(65519.0f), 65504.0f);
  EXPECT_EQ(half_bits_to_float(0x7bff), static_cast<float>(kFp16Max));
  EXPECT_EQ(half_bits_to_float(0x0400), static_cast<float>(kFp16MinNormal));
  EXPECT_EQ(half_bits_to_float(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(f32_bits(half_bits_to_float(0x8000)), 0x80000000u);
  EXPECT_TRUE(std::isnan(half_bits_to_float(0x7e00)));
  EXPECT_EQ(half_bits_to_float(0xfc00), -INFINITY);
}

TEST(Precision, Fp16AllHalvesRoundTrip) {
  for (uint32_t h = 0; h < 0x10000u; ++h) {
    const uint16_t hb = static_cast<uint16_t>(h);
    const float x = half_bits_to_float(hb);
    if (is_nan_half(hb)) {
      EXPECT_TRUE(std::isnan(x)) << std::hex << h;
      continue;
    }
    const int e = (h >> 10) & 0x1f;
    const double mag = e == 0 ? std::ldexp(h & 0x3ff, -24)
                       : e == 31 ? INFINITY
                                 : std::ldexp(1024 + (h & 0x3ff), e - 25);
    ASSERT_EQ(static_cast<double>(x), (h & 0x8000) ? -mag : mag) << std::hex << h;
    ASSERT_EQ(float_to_half_bits(x), hb) << std::hex << h;
  }
}

TEST(Precision, Bf16KnownValues) {
  EXPECT_EQ(float_to_bf16_bits(1.0f), 0x3f80);
  EXPECT_EQ(float_to_bf16_bits(-0.0f), 0x8000);
  EXPECT_EQ(float_to_bf16_bits(f(0x3f808000u)), 0x3f80);  // tie down to even
  EXPECT_EQ(float_to_bf16_bits(f(0x3f818000u)), 0x3f82);  // tie up to even
  EXPECT_EQ(float_to_bf16_bits(f(0x3f808001u)), 0x3f81);
  EXPECT_EQ(float_to_bf16_bits(f(0x3f807fffu)), 0x3f80);
  EXPECT_EQ(float_to_bf16_bits(f(0x7f7f7fffu)), 0x7f7f);
  EXPECT_EQ(float_to_bf16_bits(f(0x7f7f8000u)), 0x7f80);  // tie at the top -> even = infinity
  EXPECT_EQ(float_to_bf16_bits(FLT_MAX), 0x7f80);
  EXPECT_EQ(float_to_bf16_bits(-INFINITY), 0xff80);
  EXPECT_TRUE(is_nan_bf16(float_to_bf16_bits(NAN)));
  EXPECT_TRUE(is_nan_bf16(float_to_bf16_bits(f(0x7f800001u))));  // not infinity
  EXPECT_TRUE(is_nan_bf16(float_to_bf16_bits(f(0xff800001u))));
  EXPECT_EQ(float_to_bf16_bits(f(0x00000001u)), 0x0000);  // subnormals round too
  EXPECT_EQ(float_to_bf16_bits(f(0x00008000u)), 0x0000);
  EXPECT_EQ(float_to_bf16_bits(f(0x00018000u)), 0x0002);
  EXPECT_EQ(float_to_bf16_bits(f(0x007fffffu)), 0x0080);  // carries into the min normal
  EXPECT_EQ(bf16_bits_to_float(0x7f7f), static_cast<float>(kBf16Max));
  EXPECT_EQ(bf16_bits_to_float(0x0080), static_cast<float>(kBf16MinNormal));
  for (uint32_t b = 0; b < 0x10000u; ++b) {
    const uint16_t bb = static_cast<uint16_t>(b);
    if (is_nan_bf16(bb)) continue;
    ASSERT_EQ(float_to_bf16_bits(bf16_bits_to_float(bb)), bb) << std::hex << b;
  }
}

TEST(Precision, Tf32KnownValues) {
  EXPECT_EQ(tf32_bits(0x3f800000u), 0x3f800000u);
  EXPECT_EQ(tf32_bits(0x3f801000u), 0x3f802000u);  // tie: away from zero, not to even
  EXPECT_EQ(tf32_bits(0xbf801000u), 0xbf802000u);
  EXPECT_EQ(tf32_bits(0x3f803000u), 0x3f804000u);  // tie whose even neighbour is below
  EXPECT_EQ(tf32_bits(0x3f800fffu), 0x3f800000u);
  EXPECT_EQ(tf32_bits(0x3fffffffu), 0x40000000u);  // carry into the exponent
  EXPECT_EQ(tf32_bits(0x7f7fefffu), 0x7f7fe000u);  // largest TF32
  EXPECT_EQ(tf32_bits(0x7f7ff000u), 0x7f800000u);  // rounds past it -> inf
  EXPECT_EQ(tf32_bits(0xff7fffffu), 0xff800000u);
  EXPECT_EQ(tf32_bits(0x7f800000u), 0x7f800000u);
  EXPECT_EQ(tf32_bits(0xff800000u), 0xff800000u);
  EXPECT_EQ(tf32_bits(0x80000000u), 0x80000000u);
  EXPECT_TRUE(std::isnan(round_tf32(NAN)));
  EXPECT_TRUE(std::isnan(round_tf32(f(0x7f800001u))));  // payload only in dropped bits
  EXPECT_TRUE(std::isnan(round_tf32(f(0xff800fffu))));
  // Subnormals are kept and rounded on the subnormal grid (2^-136 spacing).
  EXPECT_EQ(tf32_bits(0x00001000u), 0x00002000u);  // tie: away
  EXPECT_EQ(tf32_bits(0x00000fffu), 0x00000000u);
  EXPECT_EQ(tf32_bits(0x80002000u), 0x80002000u);
  EXPECT_EQ(tf32_bits(0x007ff000u), 0x00800000u);  // largest subnormal tie -> min normal
}

TEST(Precision, Tf32MatchesDefinitionOnRandomBits) {
  const uint32_t seed = 20240601u;
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  for (int i = 0; i < 2000000; ++i) {
    uint32_t in = rng();
    if (i % 4 == 0) in = (in & 0xffffe000u) | 0x1000u;  // force exact ties
    const uint32_t got = tf32_bits(in), want = tf32_reference(in);
    if (std::isnan(f(in))) {
      ASSERT_TRUE(std::isnan(f(got))) << std::hex << in;
    } else {
      ASSERT_EQ(got, want) << std::hex << "input 0x" << in;
    }
  }
}

TEST(Precision, Fp16Bf16MatchTorchCasts) {
  const std::string python = DIVSCOPE_PYTHON;
  if (std::system((python + " -c 'import torch, numpy' 2>/dev/null").c_str()) != 0)
    GTEST_SKIP() << python << " cannot import torch and numpy (python3-torch, python3-numpy)";
  char dir[] = "/tmp/divscope_precision_XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string out = std::string(dir) + "/torch_conversions.bin";
  const int seed = 7;
  SCOPED_TRACE("seed " + std::to_string(seed) + ", file " + out);
  const std::string cmd = python + " " + DIVSCOPE_SOURCE_DIR + "/tests/torch_conversions.py " + out +
                          " " + std::to_string(seed) + " 100000";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;

  std::ifstream in(out, std::ios::binary);
  uint32_t n = 0;
  in.read(reinterpret_cast<char*>(&n), 4);
  ASSERT_GT(n, 100000u);
  std::vector<uint32_t> bits(n);
  std::vector<uint16_t> h(n), b(n);
  in.read(reinterpret_cast<char*>(bits.data()), 4 * static_cast<std::streamsize>(n));
  in.read(reinterpret_cast<char*>(h.data()), 2 * static_cast<std::streamsize>(n));
  in.read(reinterpret_cast<char*>(b.data()), 2 * static_cast<std::streamsize>(n));
  ASSERT_TRUE(in.good()) << "short file " << out;

  long fails = 0;
  for (uint32_t i = 0; i < n && fails < 10; ++i) {
    const float x = f(bits[i]);
    const uint16_t mh = float_to_half_bits(x), mb = float_to_bf16_bits(x);
    const bool ok_h = is_nan_half(h[i]) ? is_nan_half(mh) : mh == h[i];
    const bool ok_b = is_nan_bf16(b[i]) ? is_nan_bf16(mb) : mb == b[i];
    if (!ok_h || !ok_b) ++fails;
    EXPECT_TRUE(ok_h) << std::hex << "input 0x" << bits[i] << ": fp16 ours 0x" << mh << " torch 0x" << h[i];
    EXPECT_TRUE(ok_b) << std::hex << "input 0x" << bits[i] << ": bf16 ours 0x" << mb << " torch 0x" << b[i];
  }
  if (fails == 0) {
    std::remove(out.c_str());
    rmdir(dir);
  }
}

TEST(Precision, StorageAndOperandRounding) {
  const float x = f(0x3f801001u);  // 1 + 2^-11 + 2^-23: differs under every rounding
  EXPECT_EQ(round_storage(Mode::fp32, x), x);
  EXPECT_EQ(round_storage(Mode::tf32, x), x);  // TF32 tensors are stored as float
  EXPECT_EQ(round_storage(Mode::strict, x), x);
  EXPECT_EQ(round_storage(Mode::fp16, x), round_fp16(x));
  EXPECT_EQ(round_storage(Mode::bf16, x), round_bf16(x));
  EXPECT_EQ(round_operand(Mode::fp32, x), x);
  EXPECT_EQ(round_operand(Mode::strict, x), x);
  EXPECT_EQ(round_operand(Mode::tf32, x), round_tf32(x));
  EXPECT_EQ(round_operand(Mode::fp16, x), round_fp16(x));
  EXPECT_EQ(round_operand(Mode::bf16, x), round_bf16(x));
  EXPECT_NE(round_tf32(x), x);
  EXPECT_NE(round_fp16(x), x);
  EXPECT_NE(round_bf16(x), x);
}

TEST(Precision, UlpDistance) {
  EXPECT_EQ(ulp_of(Mode::fp32, 1.0), std::ldexp(1.0, -23));
  EXPECT_EQ(ulp_of(Mode::fp32, 1.5), std::ldexp(1.0, -23));
  EXPECT_EQ(ulp_of(Mode::fp32, -2.0), std::ldexp(1.0, -22));
  EXPECT_EQ(ulp_of(Mode::tf32, 1.0), std::ldexp(1.0, -23));  // tf32 stores float
  EXPECT_EQ(ulp_of(Mode::fp16, 1.0), std::ldexp(1.0, -10));
  EXPECT_EQ(ulp_of(Mode::bf16, 1.0), std::ldexp(1.0, -7));
  EXPECT_EQ(ulp_of(Mode::fp64, 1.0), std::ldexp(1.0, -52));
  EXPECT_EQ(ulp_of(Mode::fp16, 1e-7), std::ldexp(1.0, -24));   // subnormal spacing
  EXPECT_EQ(ulp_of(Mode::fp16, 0.0), std::ldexp(1.0, -24));
  EXPECT_EQ(ulp_of(Mode::fp32, 1e-40), std::ldexp(1.0, -149));
  EXPECT_EQ(ulp_of(Mode::bf16, 1e-300), std::ldexp(1.0, -133));
  EXPECT_EQ(ulp_of(Mode::fp64, 0.0), std::ldexp(1.0, -1074));
  EXPECT_EQ(ulp_of(Mode::fp16, 1e6), std::ldexp(1.0, 9));      // beyond 65504: keeps growing
  EXPECT_EQ(ulp_distance(Mode::fp32, 1.0 + std::ldexp(1.0, -23), 1.0), 1.0);
  EXPECT_EQ(ulp_distance(Mode::fp16, 1.0, 1.0 + std::ldexp(3.0, -10)), 3.0);
  EXPECT_EQ(ulp_distance(Mode::fp32, 0.75, 1.0), std::ldexp(1.0, 21));
  EXPECT_EQ(ulp_distance(Mode::fp32, 2.0, 2.0), 0.0);
  EXPECT_EQ(ulp_distance(Mode::fp32, INFINITY, INFINITY), 0.0);
  EXPECT_EQ(ulp_distance(Mode::fp32, INFINITY, 1.0), INFINITY);
  EXPECT_EQ(ulp_distance(Mode::fp32, 1.0, -INFINITY), INFINITY);
  EXPECT_TRUE(std::isnan(ulp_distance(Mode::fp32, NAN, 1.0)));
  EXPECT_TRUE(std::isnan(ulp_distance(Mode::fp32, 1.0, NAN)));
  EXPECT_EQ(ulp_distance(Mode::bf16, 0.0, -0.0), 0.0);
}

// The bulk rounding of the CPU modes' hot loops (round_bulk.h) is precision.h's per-element
// rounding. fp16 through F16C (where the CPU has it) is another implementation: every one of the
// 2^32 float bit patterns (NaN payloads, subnormals, both zeros, the overflow edge). The other
// modes and the portable loops call the per-element functions: a strided sample of patterns.
TEST(Precision, BulkRoundingIsPerElementRounding) {
  constexpr int64_t kChunk = int64_t(1) << 20;
  std::vector<float> buf(kChunk);
  auto check = [&](Mode m, bool portable, uint64_t stride) {
    round_bulk_force_portable(portable);
    int64_t bad = 0;
    for (uint64_t base = 0; base < (uint64_t(1) << 32); base += kChunk * stride) {
      auto pattern = [&](int64_t i) { return static_cast<uint32_t>(base + static_cast<uint64_t>(i) * stride); };
      for (int64_t i = 0; i < kChunk; ++i) buf[i] = bits_f32(pattern(i));
      const int64_t n = kChunk - 3;   // an odd length: the vector loop's scalar end runs too
      round_operands_bulk(m, buf.data(), n);
      for (int64_t i = 0; i < kChunk; ++i) {
        const float x = bits_f32(pattern(i));
        const float want = i < n ? round_operand(m, x) : x;
        if (f32_bits(buf[i]) != f32_bits(want) && bad++ < 3)
          ADD_FAILURE() << mode_name(m) << (portable ? " portable" : " default path") << ": 0x"
                        << std::hex << pattern(i) << " -> 0x" << f32_bits(buf[i]) << ", want 0x"
                        << f32_bits(want);
      }
    }
    round_bulk_force_portable(false);
    return bad;
  };
  EXPECT_EQ(check(Mode::fp16, false, 1), 0);
  for (Mode m : {Mode::fp16, Mode::bf16, Mode::tf32, Mode::fp32, Mode::strict}) {
    EXPECT_EQ(check(m, true, 4099), 0) << mode_name(m);
    EXPECT_EQ(check(m, false, 4099), 0) << mode_name(m);
  }
  // Storage rounding: fp16 and bf16 round; the other modes keep the value.
  const std::vector<float> s = {1.0f + 0x1p-12f, 65520.0f, -0x1p-25f, bits_f32(0x7f800001u), 0x1p-20f};
  for (Mode m : {Mode::fp16, Mode::bf16, Mode::tf32, Mode::fp32, Mode::strict}) {
    std::vector<float> got = s;
    round_storage_bulk(m, got.data(), static_cast<int64_t>(got.size()));
    for (size_t i = 0; i < s.size(); ++i)
      EXPECT_EQ(f32_bits(got[i]), f32_bits(round_storage(m, s[i]))) << mode_name(m) << " " << i;
  }
}
