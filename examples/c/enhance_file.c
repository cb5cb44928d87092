/* Enhance a 16 kHz mono 16-bit PCM WAV file through the Thunder C API, streaming it in small
 * blocks as a voice application would.
 *
 * Build (from the repository root, after `cargo build --release --lib`):
 *   gcc -O2 -Wall -Wextra -Iinclude examples/c/enhance_file.c -Ltarget/release -lthunder \
 *       -Wl,-rpath,"$PWD/target/release" -o enhance_file
 * Run:
 *   ORT_DYLIB_PATH=.cache/ort/libonnxruntime.so ./enhance_file MODEL.onnx in.wav out.wav [steps]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "thunder.h"

static uint32_t rd32(const unsigned char *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }
static uint16_t rd16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* Read a 16 kHz mono 16-bit PCM WAV; returns samples as floats (caller frees) or NULL. */
static float *read_wav(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); return NULL; }
    unsigned char h[12], ch[8];
    float *out = NULL;
    int fmt_ok = 0;
    if (fread(h, 1, 12, f) != 12 || memcmp(h, "RIFF", 4) || memcmp(h + 8, "WAVE", 4)) goto bad;
    while (fread(ch, 1, 8, f) == 8) {
        uint32_t size = rd32(ch + 4);
        if (!memcmp(ch, "fmt ", 4)) {
            unsigned char fm[16];
            if (size < 16 || fread(fm, 1, 16, f) != 16) goto bad;
            fmt_ok = rd16(fm) == 1 && rd16(fm + 2) == 1 && rd32(fm + 4) == thunder_sample_rate() && rd16(fm + 14) == 16;
            if (fseek(f, (long)(size - 16 + (size & 1)), SEEK_CUR)) goto bad;
        } else if (!memcmp(ch, "data", 4)) {
            if (!fmt_ok) break;
            *n = size / 2;
            int16_t *pcm = malloc(size ? size : 1);
            out = malloc((*n ? *n : 1) * sizeof(float));
            if (!pcm || !out || fread(pcm, 2, *n, f) != *n) { free(pcm); free(out); out = NULL; goto bad; }
            for (size_t i = 0; i < *n; i++) out[i] = pcm[i] / 32768.0f;
            free(pcm);
            fclose(f);
            return out;
        } else if (fseek(f, (long)(size + (size & 1)), SEEK_CUR)) {
            goto bad;
        }
    }
bad:
    fprintf(stderr, "%s: need a 16 kHz mono 16-bit PCM WAV\n", path);
    fclose(f);
    return NULL;
}

static int write_wav(const char *path, const float *x, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) { perror(path); return -1; }
    uint32_t rate = thunder_sample_rate(), data = (uint32_t)(n * 2);
    unsigned char h[44] = "RIFF\0\0\0\0WAVEfmt \x10\0\0\0\x01\0\x01\0\0\0\0\0\0\0\0\0\x02\0\x10\0data";
    uint32_t riff = 36 + data, byterate = rate * 2;
    memcpy(h + 4, &riff, 4); memcpy(h + 24, &rate, 4); memcpy(h + 28, &byterate, 4); memcpy(h + 40, &data, 4);
    fwrite(h, 1, 44, f);
    for (size_t i = 0; i < n; i++) {
        float v = x[i] * 32768.0f;
        int16_t s = (int16_t)(v > 32767.0f ? 32767 : v < -32768.0f ? -32768 : v);
        fwrite(&s, 2, 1, f);
    }
    return fclose(f);
}

static int fail(const char *what, ThunderStatus s) {
    const char *msg = thunder_last_error();
    fprintf(stderr, "%s failed (status %d): %s\n", what, (int)s, msg ? msg : "?");
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s MODEL.onnx in.wav out.wav [steps]\n", argv[0]);
        return 2;
    }
    size_t n = 0;
    float *x = read_wav(argv[2], &n);
    if (!x) return 3;

    ThunderOptions opts;
    thunder_options_default(&opts);
    if (argc > 4) opts.steps = (uint32_t)atoi(argv[4]);
    ThunderEnhancer *e = NULL;
    ThunderStatus s = thunder_create(argv[1], &opts, &e);
    if (s != THUNDER_STATUS_OK) return fail("thunder_create", s);

    const size_t block = 160; /* 10 ms, as a VoIP frame; any size works */
    float *y = malloc((n + 1) * sizeof(float));
    float *tmp = malloc(thunder_max_output(e, n) * sizeof(float));
    size_t got = 0;
    for (size_t at = 0; at < n; at += block) {
        size_t len = n - at < block ? n - at : block, k = 0;
        s = thunder_process(e, x + at, len, tmp, thunder_max_output(e, len), &k);
        if (s != THUNDER_STATUS_OK) return fail("thunder_process", s);
        memcpy(y + got, tmp, k * sizeof(float));
        got += k;
    }
    size_t k = 0;
    s = thunder_flush(e, tmp, thunder_max_output(e, 0), &k);
    if (s != THUNDER_STATUS_OK) return fail("thunder_flush", s);
    memcpy(y + got, tmp, k * sizeof(float));
    got += k;

    /* Errors come back as codes with a message, never as a crash. */
    s = thunder_process(e, x, 1, tmp, 0, &k);
    if (s != THUNDER_STATUS_BUFFER_TOO_SMALL) { fprintf(stderr, "expected BUFFER_TOO_SMALL\n"); return 1; }

    printf("thunder %s: %zu samples in, %zu out, latency %zu samples (%.1f ms), steps %u\n", thunder_version(), n,
           got, thunder_latency_samples(e), 1000.0 * thunder_latency_samples(e) / thunder_sample_rate(), opts.steps);
    thunder_destroy(e);
    int rc = write_wav(argv[3], y, got);
    free(x); free(y); free(tmp);
    return rc == 0 && got == n ? 0 : 1;
}
