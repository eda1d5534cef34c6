/* Partial JPEG decoding with libjpeg-turbo (jpeg_crop_scanline + jpeg_skip_scanlines) against the whole
 * frame: is the cropped region the same pixels, and how much faster is it? (docs/benchmarks.md)
 *
 *   gcc -O2 scripts/jpeg_partial_decode.c -o /tmp/jpeg_partial_decode -ljpeg   # needs libjpeg-turbo's headers
 *   /tmp/jpeg_partial_decode FRAME.jpg X Y WIDTH HEIGHT
 *
 * Prints the column libjpeg-turbo starts the cropped decode at (rounded down to a whole iMCU), how many
 * of the crop's bytes differ from the same crop of the whole decoded frame, and the process CPU time of
 * one decode each way (best of 2000).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jpeglib.h>

static double cpu_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* Decode the crop (x, y, w, h) of the JPEG into out (h rows of w RGB pixels), whole frame or partially. */
static unsigned decode(unsigned char *jpeg, unsigned long size, unsigned char *out, int x, int y, int w, int h,
                       int partial) {
    struct jpeg_decompress_struct c;
    struct jpeg_error_mgr err;
    unsigned char row[4096 * 3];
    JSAMPROW rows[1] = {row};
    JDIMENSION x0 = 0, width;
    c.err = jpeg_std_error(&err);
    jpeg_create_decompress(&c);
    jpeg_mem_src(&c, jpeg, size);
    jpeg_read_header(&c, TRUE);
    c.out_color_space = JCS_RGB;
    jpeg_start_decompress(&c);
    width = c.output_width;
    if (partial) {
        x0 = x;
        width = w;
        jpeg_crop_scanline(&c, &x0, &width); /* x0 moves left to an iMCU boundary */
        if (y > 0) jpeg_skip_scanlines(&c, y);
    }
    while (c.output_scanline < (partial ? (unsigned)(y + h) : c.output_height)) {
        unsigned line = c.output_scanline;
        jpeg_read_scanlines(&c, rows, 1);
        if (line >= (unsigned)y && line < (unsigned)(y + h)) memcpy(out + (line - y) * w * 3, row + (x - x0) * 3, w * 3);
    }
    if (partial)
        jpeg_abort_decompress(&c);
    else
        jpeg_finish_decompress(&c);
    jpeg_destroy_decompress(&c);
    return x0;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s FRAME.jpg X Y WIDTH HEIGHT\n", argv[0]);
        return 2;
    }
    FILE *f = fopen(argv[1], "rb");
    if (!f) return 1;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *jpeg = malloc(size);
    if (fread(jpeg, 1, size, f) != (size_t)size) return 1;
    fclose(f);
    int x = atoi(argv[2]), y = atoi(argv[3]), w = atoi(argv[4]), h = atoi(argv[5]);
    unsigned char *whole = malloc(w * h * 3), *part = malloc(w * h * 3);
    decode(jpeg, size, whole, x, y, w, h, 0);
    unsigned x0 = decode(jpeg, size, part, x, y, w, h, 1);
    int differ = 0;
    for (int i = 0; i < w * h * 3; i++) differ += whole[i] != part[i];
    double best[2] = {1e9, 1e9};
    for (int i = 0; i < 2000; i++) {
        for (int p = 0; p < 2; p++) {
            double t = cpu_seconds();
            decode(jpeg, size, p ? part : whole, x, y, w, h, p);
            t = cpu_seconds() - t;
            if (t < best[p]) best[p] = t;
        }
    }
    printf("crop x %d y %d %dx%d: partial decode starts at column %u, %d of %d bytes differ, "
           "whole %.1f us, partial %.1f us\n",
           x, y, w, h, x0, differ, w * h * 3, best[0] * 1e6, best[1] * 1e6);
    return 0;
}
