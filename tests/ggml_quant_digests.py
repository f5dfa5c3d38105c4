"""SHA-256 digests of ggml's quantizer output over fixed inputs.

The inputs are made from integer hashing and exactly rounded float32 products
only, so every platform and numpy version builds the same bits. The digests
are those of ggml's ``ggml_quantize_chunk`` (ggml commit d99724f, its base
library built with ``-DGGML_NATIVE=OFF``) on these inputs: the tests check
zigllama's bytes against them without needing ggml. To regenerate them from a
ggml checkout:

    GGML_SRC=/path/to/ggml python tests/ggml_quant_digests.py > digests.txt

and paste the printed table over ``DIGESTS`` below.
"""
import hashlib

import numpy as np

ROWS, COLS = 16, 512

# name -> ggml type id (the types zigllama quantizes to)
TYPES = {
    "F16": 1, "BF16": 30, "Q4_0": 2, "Q4_1": 3, "Q5_0": 6, "Q5_1": 7, "Q8_0": 8,
    "Q2_K": 10, "Q3_K": 11, "Q4_K": 12, "Q5_K": 13, "Q6_K": 14,
    "IQ4_NL": 20, "IQ4_XS": 23, "TQ1_0": 34, "TQ2_0": 35, "MXFP4": 39,
}
IMATRIX_TYPES = ("Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS")


def splitmix64(seed, n):
    """n pseudo-random uint64 (splitmix64 of seed * 2^32 + 0, 1, ...)."""
    with np.errstate(over="ignore"):
        z = np.uint64(seed) * np.uint64(1 << 32) + np.arange(n, dtype=np.uint64)
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def bell(seed, n):
    """Integers in [-131070, 131070], roughly normal (a sum of four 16-bit parts)."""
    z = splitmix64(seed, n)
    m = np.uint64(0xFFFF)
    parts = [((z >> np.uint64(s)) & m).astype(np.int64) for s in (0, 16, 32, 48)]
    return parts[0] + parts[1] + parts[2] + parts[3] - 2 * 65535


def row_scales(seed, lo_exp, hi_exp):
    """One float32 scale per row: 2^e * (1 + fraction), e in [lo_exp, hi_exp]."""
    z = splitmix64(seed, ROWS)
    e = lo_exp + (z % np.uint64(hi_exp - lo_exp + 1)).astype(np.int64)
    frac = ((z >> np.uint64(20)) & np.uint64(0xFFFFF)).astype(np.float32) / np.float32(1 << 20)
    return (np.ldexp(np.float32(1), e).astype(np.float32) * (np.float32(1) + frac)).astype(np.float32)


def special_blocks():
    """Blocks that reach the corners: zeros of both signs, constants, halves,
    one outlier, sparse rows, tiny values, equal magnitudes of both signs."""
    x = (bell(11, ROWS * COLS).astype(np.float32) * np.float32(1.0 / 40000)).reshape(ROWS, COLS)
    x[0] = 0.0
    x[1] = -0.0
    x[2, ::2] = -0.0
    x[2, 1::2] = 0.0
    x[3] = 3.0
    x[4] = -0.25
    x[5] = np.round(x[5] * 4) / 2
    x[6, :] = 0.0
    x[6, 37] = 5.0
    x[7][(splitmix64(12, COLS) % np.uint64(10)) != 0] = 0.0
    x[8] *= np.float32(1e-30)
    x[9] = np.where(np.arange(COLS) % 2 == 0, 1.5, -1.5)
    x[10, :256] = 0.0
    x[11, :32] = -0.0
    x[11, 32:64] = 7.0
    return x.astype(np.float32)


def float_corners(type_name):
    """For F16 and BF16: NaN (with payloads), inf, rounding ties, subnormals, and
    the largest magnitudes that still round to a finite value of the type."""
    bits = np.array([0x7FC00000, 0xFFC12345, 0x7F812345, 0x7F800000, 0xFF800000, 0x477FE000, 0x477FEFFF,
                     0x3F801000, 0x3F803000, 0x3F808000, 0x3F818000, 0x33000000, 0x33000001, 0x387FC000,
                     0x00000001, 0x80000000, 0x7F7F7FFF, 0xFF7F7FFF], np.uint32)
    if type_name == "F16":
        bits[-2:] = (0x477FEFFF, 0xC77FE000)
    x = np.resize(bits.view(np.float32), ROWS * COLS).reshape(ROWS, COLS).copy()
    x[1::2] = (bell(13, ROWS * COLS // 2).astype(np.float32) * np.float32(0.001)).reshape(ROWS // 2, COLS)
    return x


def inputs(type_name):
    """[(case name, float32 rows, importance weights or None)] for one type."""
    gauss = (bell(1, ROWS * COLS).astype(np.float32).reshape(ROWS, COLS) * np.float32(2.0 ** -15)
             * row_scales(2, -12, 10)[:, None]).astype(np.float32)
    b = bell(3, ROWS * COLS).astype(np.float64)
    heavy = ((b / 37837.0) ** 3).astype(np.float32).reshape(ROWS, COLS)
    cases = [("gauss", gauss, None), ("heavy", heavy, None), ("special", special_blocks(), None)]
    if type_name in ("F16", "BF16"):
        cases.append(("float-corners", float_corners(type_name), None))
    if type_name in IMATRIX_TYPES:
        w = (splitmix64(4, COLS) >> np.uint64(40)).astype(np.float32) * np.float32(2.0 ** -20)
        w[(splitmix64(5, COLS) % np.uint64(7)) == 0] = 0.0
        cases += [("gauss+imatrix", gauss, w), ("special+imatrix", special_blocks(), w)]
    return cases


def digest(raw):
    return hashlib.sha256(np.ascontiguousarray(raw).tobytes()).hexdigest()


# (type, case) -> SHA-256 of ggml's bytes
DIGESTS = {
    ('F16', 'gauss'): 'f3cb85982d2ccfe72eca9bd23c358bb983f0692c36b120538a93c079239657be',
    ('F16', 'heavy'): '9a08acbe323a1977f85bdaab92586512b8e55fd99e63e72e60a9196de8b60082',
    ('F16', 'special'): 'd23c99ca3d75741fb9c6beeff496fa14138ba3be6d755a1b148a7674d10e6d7b',
    ('F16', 'float-corners'): 'fe25eace5cdb6765007e95ccd018218cac5f66c75d743456312a87e970930de1',
    ('BF16', 'gauss'): 'aa8414a7895dba3f605cda7f3dac0ec786cc96c3a7841f7a4b771f05206a5e66',
    ('BF16', 'heavy'): 'ace2388e1dd432ba9a1fef91724f6e1089a4e6f3a26885fb286e288f99c0fc53',
    ('BF16', 'special'): 'de2f18f293d4489137d579d1b7624266bc415d951b526d125795ef29ac5f650a',
    ('BF16', 'float-corners'): '74806bf9e53b7b2de90a986560c96a3012fe1987bd89b48ea4c4a5590e0b20e7',
    ('Q4_0', 'gauss'): '64aa3f83dd0baee1c5a9879a0e76d139134fbb1ebd38e20126a73b5856fb83bb',
    ('Q4_0', 'heavy'): 'd1b37e13bcc145ab08b69622697b875e1794f82a616493ae297e97149267c002',
    ('Q4_0', 'special'): 'f8a606a05bbde8350a68b1700ca0b384874e358572b137f386ac12a0194908c6',
    ('Q4_1', 'gauss'): '4dfda854b7d2a55e4c36a2e2f7fd0d2cc242a610d669dd89304e7f43c15ad828',
    ('Q4_1', 'heavy'): '607d6df89cb7691f91b1e1e92c74459301162ba594dea95966f2329093c81c51',
    ('Q4_1', 'special'): '7f18f360d44c8b06d51771eff7a466ad4b7488943093ed437d68841e0fd8c079',
    ('Q5_0', 'gauss'): 'c7cc69c294180fda060ac356f6c411b36aad32e4fa3c2ddcd8c726893ab5bb48',
    ('Q5_0', 'heavy'): '3c6def3d2be361c369ed38f707fc60030796106653ec31b8699369a8ba02936c',
    ('Q5_0', 'special'): '238bf9911ca2248212c2f47217bae8313b2693ac427ce878aad5fa4a58f74505',
    ('Q5_1', 'gauss'): '618d247d0caf3f1b7bffd47a8ddd16d14a7faf1c0d77bd8e0608817c8f5b1fdc',
    ('Q5_1', 'heavy'): 'dd9a65eb3368790361b67d25bcdaecc6a38ee7c8d7cc6c7d8b8bff6cb06430b6',
    ('Q5_1', 'special'): '27881fa70b72de2ae62dfab62dcaa775e404f55001b0019a3197ce94eae2d967',
    ('Q8_0', 'gauss'): 'a579fffb685a4049b0aee188a598a2f9ff12e4cb0f00c7c69c5883faba7223cc',
    ('Q8_0', 'heavy'): 'f4b9a639e213ae7babdc1068e542a2f933683e5c0e6257fb4acd5cfcf172fcd5',
    ('Q8_0', 'special'): '462c07a9ba55d04470248ab49054e919e1c32663fc27cafc14fda6aa64dcda29',
    ('Q2_K', 'gauss'): '00de93c32146ffe3e2e96d784a40c4e187a2f57e5a75ba011f203c24e0118e9c',
    ('Q2_K', 'heavy'): '8e19ab55506be70fcab87076e371cfc22a83535cdf6081288ce882dbb72c7432',
    ('Q2_K', 'special'): 'bae442de841ae68ac655c2538c2789fa570365aafa6c197167b2b05ee3c9c209',
    ('Q2_K', 'gauss+imatrix'): '618ca7a6f3da35cc7194ca75a1dd20836891e7e209773066dee761e6321b63d5',
    ('Q2_K', 'special+imatrix'): '15377cf3bc8c745fc36030516c1177dfc2c511a35874bbff272e8f1ae8946a05',
    ('Q3_K', 'gauss'): 'a6983b8efda7be754bb87a0490905dc8e9a7fb121d3f70b9d1c44d24a89104e2',
    ('Q3_K', 'heavy'): 'b18421cec5b2e2012a3bdfadc4057eb69c181337989ae78852e7c010a0ffb262',
    ('Q3_K', 'special'): '608e1f7410761cebf29385981e4e272c63982ad4e94740f7fd00485821671457',
    ('Q3_K', 'gauss+imatrix'): 'd1d0caf73317fe41c6aa44cebf0372a3df845eb79be838c70d2ff4f2888eec3b',
    ('Q3_K', 'special+imatrix'): 'eb360f064325a8cf8c578aa7ef7f164cec9ba5cb5d214ffb810d968cdeb5dd90',
    ('Q4_K', 'gauss'): 'dc4dd2e158c3d3811ac632a478b57083cba1e13b999d762b0fd2f383d7c584be',
    ('Q4_K', 'heavy'): '1692354a1a5d4ebcabb9ebc89b302154f0fbc8df51af841fc83a76a09867fe19',
    ('Q4_K', 'special'): 'b1be2a9683fa0dd8ed0dcffb63f9e5616c0aff262502b43a7b97a573cf1321da',
    ('Q4_K', 'gauss+imatrix'): '6cb1672ab9ca6f124e986f78d3685516b78c4cb2c565ac929bd8f15315ac8224',
    ('Q4_K', 'special+imatrix'): '2b4122f7964fad6e4fde0a87cd124bffb5aebdd5bf95825d7ecf5a0b8fc605e0',
    ('Q5_K', 'gauss'): '0aa15f6c6425f39e906bf81ffab141e70c44fcdadf4152ff0f8bd6864e57280b',
    ('Q5_K', 'heavy'): 'dffcc65b64835018b5ad83b044c6652eee1ffd753495777cbb77077576d50b79',
    ('Q5_K', 'special'): '4d127ddba901322fa0969b28f9b0d23914f80cce9e9fb93ea911aab812f4d7c2',
    ('Q5_K', 'gauss+imatrix'): '74ae035b23cfa687a7704e4bd689187a24aad90b9882284c32440338ebc1bae9',
    ('Q5_K', 'special+imatrix'): '1c7c600bd4794d9f0d9fa211244549aa95e1f7ddf1eb36dee52b163277ca7c2b',
    ('Q6_K', 'gauss'): '31055e1e703be8d6bd8bd9fdf49562fb8052c31354a1d5a197de2fb410348067',
    ('Q6_K', 'heavy'): 'b72ee841627ee4049a410ca8c66aa8c05210a763cb26a057fc907d597f1cfee9',
    ('Q6_K', 'special'): 'dd0d8a3f463f6fb29869956926a7c19d6027e4eead9150764e05337015c15dc4',
    ('Q6_K', 'gauss+imatrix'): 'be1aba52cd5467f81e22d4db18cd8b11f5477ffebecca2826c0376aa9e265ecf',
    ('Q6_K', 'special+imatrix'): 'e0d97977b76561701d6a2dfe3faea4a227bd55fa780ba6b1ed59b923e2a5f385',
    ('IQ4_NL', 'gauss'): '326363f9d1954481b78faa8342788e99384e501525dd3ae6e7578785d9250a63',
    ('IQ4_NL', 'heavy'): '19cc8b28fa1d4b300f062587c494ee15ad9435168dc60c8102cabd444f5a2e0d',
    ('IQ4_NL', 'special'): '5699be52577f187bfb331e3f039dd1048dac2cd2a5fa248f33cacc1811568021',
    ('IQ4_NL', 'gauss+imatrix'): '1c91cd5689bda64ca6f7ad617b29e8fbdd5fbaefe858b4ffb98c6a842d8dc2bb',
    ('IQ4_NL', 'special+imatrix'): '0f774e1e3ecc5de0e4bca722f5a598d4c6838ee858bb0b52d18f7fe1b4e36c6c',
    ('IQ4_XS', 'gauss'): '888846a56cf0a167981557574a96d14937c93183b76ec37d6741303996a153c7',
    ('IQ4_XS', 'heavy'): '6ba6b6d30faa4cb52a9ce4129c93cd7233aa1996dbdaa8314f8a38e3f2469ee4',
    ('IQ4_XS', 'special'): '6759aed9526bbe6fa5d72f7aa64b34f6f553f33dcf99c20cdeb472cc70c7aa6b',
    ('IQ4_XS', 'gauss+imatrix'): 'fa52d0ac7e3af2c6148df14a90bd6e2634a4b4ede13cb345c47ca57c0d520913',
    ('IQ4_XS', 'special+imatrix'): '0407a4a226beb81397d5efaafcc4e43027983d0dd4005ba7c6de5efafb31b2b3',
    ('TQ1_0', 'gauss'): '748bd1c2f2b28cc9bd838a974928548d44912d310d9ddf519967b3fa15c2ecbc',
    ('TQ1_0', 'heavy'): '7ef04081fab02ff16543a4ccba0753fbfb3a0d70731cf2e4b85aad35e486cacb',
    ('TQ1_0', 'special'): '1702dcb05d26c9b06b1a6d8f7233e81ccede515b4ff88ece9d9c019002c008f9',
    ('TQ2_0', 'gauss'): '6bb776bd7cff6134380fc4616a45998d31df55e8c575f85077219638797441e2',
    ('TQ2_0', 'heavy'): '9a87e0ed306b400ccb6cd3436a09e3382fb300e1620364829f995788dafe4104',
    ('TQ2_0', 'special'): '6f029176b8ab285f9a1c7c11bb7f8993980d991a4a6f7117487129ba7e64f00f',
    ('MXFP4', 'gauss'): '173ba6760bb9a2892bcad49b5ffde9dbb842aebac0741212856351abf4c83d7b',
    ('MXFP4', 'heavy'): '12651bb129018af30af162b92f6eea65857a495846d0321ebf04155874edbe01',
    ('MXFP4', 'special'): '268c0c6f358fc563eec5fe9702bc4f6aac61b4c247ce03abe76c9f39fd3a11fd',
}


if __name__ == "__main__":
    import os
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks"))
    from ggml_reference import GGMLQuantizer

    ggml = GGMLQuantizer()
    print("DIGESTS = {")
    for name, type_id in TYPES.items():
        for case, x, w in inputs(name):
            print(f"    ({name!r}, {case!r}): {digest(ggml.quantize(x, type_id, w))!r},")
    print("}")
