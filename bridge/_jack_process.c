/*
 * The native JACK backend's process callback, in C: JACK's realtime thread never waits for
 * Python's GIL.
 *
 * A Python process callback (JACK-Client's) must take the GIL every period; while another
 * thread holds it the callback misses its deadline, the server loses that period's input and
 * the clients after it read its last buffer again.  This callback takes no lock and never
 * enters Python.  It talks to Python through two single-producer single-consumer rings of
 * fixed slots (C11 atomics, acquire/release):
 *
 *   input:  the callback pushes every event with its frame time (last_frame_time + offset);
 *           one Python thread pops (bridge/jack_native.py, JackMidiInput);
 *   output: Python (the scheduler, serialised by JackOutput's lock) pushes events with the
 *           frame they are due at; the callback writes each at its offset in the period where
 *           it is due (late ones at offset 0), in the order they were pushed.
 *
 * libjack's functions come in as pointers (ap_attach), taken from the libjack JACK-Client
 * loaded, so this file needs no JACK headers, links against nothing, and runs under
 * PipeWire's libjack too; the tests pass fake functions to drive it on a fake timeline.
 *
 * The module is also importable (PyInit__jack_process, no methods) so that Python finds the
 * shared object wherever it was installed; bridge/jack_native_process.py loads it with ctypes.
 *
 * The heuristics for a late call (missed periods: hold the output once, owe extra note-offs;
 * a period handled twice; an input buffer handed over again) are documented in
 * bridge/jack_native.py; counters in struct ap_stats.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define AP_IN_WIDTH 4      /* bytes of one input event (MIDI channel/system messages) */
#define AP_OUT_WIDTH 16    /* bytes of one output event */
#define AP_SCRATCH 256     /* input events per period compared against the last period */
#define AP_KEYS (16 * 128) /* channel * 128 + key */

typedef struct {
    uint32_t time;
    size_t size;
    uint8_t *buffer;
} ap_midi_event; /* jack_midi_event_t */

typedef struct {
    void *(*port_get_buffer)(void *port, uint32_t nframes);
    uint32_t (*midi_get_event_count)(void *port_buffer);
    int (*midi_event_get)(ap_midi_event *event, void *port_buffer, uint32_t index);
    void (*midi_clear_buffer)(void *port_buffer);
    int (*midi_event_write)(void *port_buffer, uint32_t time, const uint8_t *data, size_t size);
    uint32_t (*last_frame_time)(const void *client);
} ap_jack_api;

typedef struct {
    uint64_t cycles, out_written, out_late, out_late_frames_max, out_full, skipped,
        extra_note_offs, repeated, input_repeats, in_rejected, in_oversized, out_rejected;
} ap_stats;

typedef struct {
    uint32_t frame;
    uint32_t size;
    uint8_t data[AP_IN_WIDTH];
} in_slot;

typedef struct {
    uint32_t frame;
    uint32_t size;
    uint32_t timed;
    uint8_t data[AP_OUT_WIDTH];
} out_slot;

typedef struct {
    uint32_t offset;
    uint32_t size;
    uint8_t data[AP_IN_WIDTH];
} seen_event;

typedef struct {
    /* set while the client is inactive (ap_attach / ap_detach) */
    ap_jack_api api;
    void *client, *in_port, *out_port;
    _Atomic int attached;

    /* rings: head written by the producer, tail by the consumer */
    in_slot *in_slots;
    uint32_t in_mask;
    _Atomic uint32_t in_head, in_tail;
    _Atomic uint64_t watermark; /* bit 32: set; low 32 bits: frame before which all is in */
    _Atomic uint64_t last_start; /* bit 32: set; low 32 bits: the newest period's first frame */
    out_slot *out_slots;
    uint32_t out_mask;
    _Atomic uint32_t out_head, out_tail;

    /* the callback's own state */
    int have_start, have_next, held;
    uint32_t period_start, next_start;
    seen_event seen[2][AP_SCRATCH];
    int seen_n[2]; /* -1: more than AP_SCRATCH events, never equal */
    int seen_cur;
    uint16_t last_ons[AP_SCRATCH];
    int last_ons_n;
    uint32_t owed[AP_KEYS];
    int owing;

    ap_stats stats;
} ap_core;

static int32_t frame_delta(uint32_t later, uint32_t earlier) { return (int32_t)(later - earlier); }

static int is_pow2(uint32_t n) { return n > 0 && (n & (n - 1)) == 0; }

/* ----- Python's side (non-realtime threads) ------------------------------------------------ */

ap_core *ap_new(uint32_t in_capacity, uint32_t out_capacity) {
    if (!is_pow2(in_capacity) || !is_pow2(out_capacity)) return NULL;
    ap_core *core = calloc(1, sizeof(ap_core));
    if (core == NULL) return NULL;
    core->in_slots = calloc(in_capacity, sizeof(in_slot));
    core->out_slots = calloc(out_capacity, sizeof(out_slot));
    if (core->in_slots == NULL || core->out_slots == NULL) {
        free(core->in_slots);
        free(core->out_slots);
        free(core);
        return NULL;
    }
    core->in_mask = in_capacity - 1;
    core->out_mask = out_capacity - 1;
    return core;
}

void ap_free(ap_core *core) {
    if (core == NULL) return;
    free(core->in_slots);
    free(core->out_slots);
    free(core);
}

/* Free the core unless a client may still call it (then it is left allocated: a core whose
 * client was never closed must outlive that client). */
void ap_release(ap_core *core) {
    if (core != NULL && !atomic_load_explicit(&core->attached, memory_order_acquire)) ap_free(core);
}

/* Point the callback at a client and its ports (the client must not be active yet).  A new
 * client starts a new timeline: the late-call state is reset, the rings are kept. */
int ap_attach(ap_core *core, const ap_jack_api *api, void *client, void *in_port,
              void *out_port) {
    if (api == NULL || api->port_get_buffer == NULL || api->midi_get_event_count == NULL ||
        api->midi_event_get == NULL || api->midi_clear_buffer == NULL ||
        api->midi_event_write == NULL || api->last_frame_time == NULL)
        return 0;
    atomic_store_explicit(&core->attached, 0, memory_order_release);
    core->api = *api;
    core->client = client;
    core->in_port = in_port;
    core->out_port = out_port;
    core->have_start = core->have_next = core->held = 0;
    atomic_store_explicit(&core->last_start, 0, memory_order_release);
    core->seen_n[0] = core->seen_n[1] = 0;
    core->last_ons_n = 0;
    memset(core->owed, 0, sizeof core->owed);
    core->owing = 0;
    atomic_store_explicit(&core->attached, 1, memory_order_release);
    return 1;
}

/* From now on the callback does nothing (call after deactivating the client). */
void ap_detach(ap_core *core) { atomic_store_explicit(&core->attached, 0, memory_order_release); }

/* Register ap_process with JACK through jack_set_process_callback (passed as a pointer). */
int ap_register(ap_core *core, int (*set_process_callback)(void *, int (*)(uint32_t, void *),
                                                           void *),
                void *client);

/* Input consumer: the oldest event; returns its size (0: the ring is empty). */
uint32_t ap_in_pop(ap_core *core, uint32_t *frame, uint8_t *data) {
    uint32_t tail = atomic_load_explicit(&core->in_tail, memory_order_relaxed);
    if (tail == atomic_load_explicit(&core->in_head, memory_order_acquire)) return 0;
    const in_slot *slot = &core->in_slots[tail & core->in_mask];
    *frame = slot->frame;
    memcpy(data, slot->data, slot->size);
    uint32_t size = slot->size;
    atomic_store_explicit(&core->in_tail, tail + 1, memory_order_release);
    return size;
}

/* The first frame of the newest period the callback ran (1), or 0 if none yet (any thread). */
int ap_period_start(ap_core *core, uint32_t *frame) {
    uint64_t s = atomic_load_explicit(&core->last_start, memory_order_acquire);
    if (!(s >> 32)) return 0;
    *frame = (uint32_t)s;
    return 1;
}

/* Input consumer: the frame before which every event has been pushed (1), or 0 if none yet. */
int ap_in_watermark(ap_core *core, uint32_t *frame) {
    uint64_t w = atomic_load_explicit(&core->watermark, memory_order_acquire);
    if (!(w >> 32)) return 0;
    *frame = (uint32_t)w;
    return 1;
}

uint32_t ap_in_pending(ap_core *core) {
    return atomic_load_explicit(&core->in_head, memory_order_acquire) -
           atomic_load_explicit(&core->in_tail, memory_order_acquire);
}

/* Output producer (one thread at a time): 1 handed over, 0 ring full, -1 too long. */
int ap_out_push(ap_core *core, uint32_t frame, const uint8_t *data, uint32_t size, int timed) {
    if (size == 0 || size > AP_OUT_WIDTH) return -1;
    uint32_t head = atomic_load_explicit(&core->out_head, memory_order_relaxed);
    if (head - atomic_load_explicit(&core->out_tail, memory_order_acquire) > core->out_mask) {
        core->stats.out_rejected++;
        return 0;
    }
    out_slot *slot = &core->out_slots[head & core->out_mask];
    slot->frame = frame;
    slot->size = size;
    slot->timed = timed != 0;
    memcpy(slot->data, data, size);
    atomic_store_explicit(&core->out_head, head + 1, memory_order_release);
    return 1;
}

uint32_t ap_out_pending(ap_core *core) {
    return atomic_load_explicit(&core->out_head, memory_order_acquire) -
           atomic_load_explicit(&core->out_tail, memory_order_acquire);
}

/* A copy of the counters (written by the callback; 64-bit reads do not tear here). */
void ap_get_stats(ap_core *core, ap_stats *out) { memcpy(out, &core->stats, sizeof *out); }

/* ----- JACK's realtime thread ---------------------------------------------------------------- */

static void push_input(ap_core *core, uint32_t frame, const uint8_t *data, size_t size) {
    if (size == 0) return;
    if (size > AP_IN_WIDTH) {
        if (data[0] != 0xF0) core->stats.in_oversized++; /* long SysEx: ignored, uncounted */
        return;
    }
    uint32_t head = atomic_load_explicit(&core->in_head, memory_order_relaxed);
    if (head - atomic_load_explicit(&core->in_tail, memory_order_acquire) > core->in_mask) {
        core->stats.in_rejected++;
        return;
    }
    in_slot *slot = &core->in_slots[head & core->in_mask];
    slot->frame = frame;
    slot->size = (uint32_t)size;
    memcpy(slot->data, data, size);
    atomic_store_explicit(&core->in_head, head + 1, memory_order_release);
}

static void read_input(ap_core *core, uint32_t start, uint32_t nframes, int on_time) {
    void *buffer = core->api.port_get_buffer(core->in_port, nframes);
    if (buffer == NULL) return;
    uint32_t n = core->api.midi_get_event_count(buffer);
    int cur = core->seen_cur ^ 1, prev = core->seen_cur;
    seen_event *seen = core->seen[cur];
    int fits = n <= AP_SCRATCH;
    uint32_t kept = 0;
    for (uint32_t i = 0; i < n; i++) {
        ap_midi_event event;
        if (core->api.midi_event_get(&event, buffer, i) != 0) continue;
        if (fits) {
            seen[kept].offset = event.time;
            seen[kept].size = (uint32_t)(event.size <= AP_IN_WIDTH ? event.size : 0);
            memset(seen[kept].data, 0, AP_IN_WIDTH);
            if (event.size <= AP_IN_WIDTH) memcpy(seen[kept].data, event.buffer, event.size);
            else fits = 0; /* an oversized event is never "the same buffer again" */
            kept++;
        }
    }
    core->seen_n[cur] = fits ? (int)kept : -1;
    core->seen_cur = cur;
    /* The very same events at the very same offsets as in the period before: the client
     * playing into us missed this period and JACK handed us its last buffer again. */
    if (on_time && fits && kept > 0 && core->seen_n[prev] == (int)kept &&
        memcmp(core->seen[prev], seen, kept * sizeof(seen_event)) == 0) {
        core->stats.input_repeats++;
        return;
    }
    for (uint32_t i = 0; i < n; i++) {
        ap_midi_event event;
        if (core->api.midi_event_get(&event, buffer, i) != 0) continue;
        push_input(core, start + event.time, event.buffer, event.size);
    }
}

static void owe_note_offs(ap_core *core, uint32_t missed) {
    for (int i = 0; i < core->last_ons_n; i++) {
        core->owed[core->last_ons[i]] += missed;
        core->owing = 1;
    }
    core->last_ons_n = 0;
}

static void write_due(ap_core *core, void *buffer, uint32_t start, uint32_t nframes) {
    uint32_t floor = 0; /* JACK wants a period's events in frame order */
    core->last_ons_n = 0;
    for (;;) {
        uint32_t tail = atomic_load_explicit(&core->out_tail, memory_order_relaxed);
        if (tail == atomic_load_explicit(&core->out_head, memory_order_acquire)) return;
        const out_slot *slot = &core->out_slots[tail & core->out_mask];
        int32_t offset = frame_delta(slot->frame, start);
        if (offset >= (int32_t)nframes) return;
        if (offset < 0) {
            if (slot->timed) {
                core->stats.out_late++;
                if ((uint64_t)(-(int64_t)offset) > core->stats.out_late_frames_max)
                    core->stats.out_late_frames_max = (uint64_t)(-(int64_t)offset);
            }
            offset = 0;
        }
        if ((uint32_t)offset < floor) offset = (int32_t)floor;
        if (core->api.midi_event_write(buffer, (uint32_t)offset, slot->data, slot->size) != 0) {
            core->stats.out_full++; /* the period's buffer is full: the rest goes next period */
            return;
        }
        uint8_t kind = slot->data[0] & 0xF0;
        if (slot->size >= 3 && (kind == 0x80 || kind == 0x90)) {
            uint16_t key = (uint16_t)((slot->data[0] & 0x0F) * 128 + (slot->data[1] & 0x7F));
            if (kind == 0x90 && slot->data[2] > 0) {
                if (core->last_ons_n < AP_SCRATCH) core->last_ons[core->last_ons_n++] = key;
            } else if (core->owing && core->owed[key] > 0) {
                for (; core->owed[key] > 0; core->owed[key]--) {
                    if (core->api.midi_event_write(buffer, (uint32_t)offset, slot->data,
                                                   slot->size) != 0)
                        break;
                    core->stats.extra_note_offs++;
                }
                core->owed[key] = 0;
            }
        }
        floor = (uint32_t)offset;
        core->stats.out_written++;
        atomic_store_explicit(&core->out_tail, tail + 1, memory_order_release);
    }
}

/* The JACK process callback (JackProcessCallback): no locks, no allocation, no Python. */
int ap_process(uint32_t nframes, void *arg) {
    ap_core *core = arg;
    if (core == NULL || !atomic_load_explicit(&core->attached, memory_order_acquire)) return 0;
    uint32_t start = core->api.last_frame_time(core->client);
    if (core->have_start && start == core->period_start) {
        /* A late call of ours already handled this period: reading the input again would
         * duplicate every event, and the output buffer already holds what is due. */
        core->stats.repeated++;
        return 0;
    }
    core->have_start = 1;
    core->period_start = start;
    atomic_store_explicit(&core->last_start, (1ULL << 32) | start, memory_order_release);
    int had_next = core->have_next;
    uint32_t expected = core->next_start;
    core->next_start = start + nframes;
    core->have_next = 1;
    int on_time = had_next && start == expected;

    read_input(core, start, nframes, on_time);
    atomic_store_explicit(&core->watermark, (1ULL << 32) | core->next_start,
                          memory_order_release);

    void *out = core->api.port_get_buffer(core->out_port, nframes);
    if (out != NULL) core->api.midi_clear_buffer(out);
    if (had_next && !on_time && !core->held) {
        /* Periods went by without us: the server has likely given up on this one, so what we
         * wrote now would be lost.  Hold the output for the next period (once), and owe the
         * clients after us one extra note-off per missed period for each note-on of our last
         * buffer, which they may have read again. */
        core->stats.skipped++;
        int32_t late = frame_delta(start, expected);
        uint32_t missed = (late > 0 && nframes > 0) ? (uint32_t)late / nframes : 0;
        owe_note_offs(core, missed > 0 ? missed : 1);
        core->held = 1;
    } else {
        core->held = 0;
        if (out != NULL) write_due(core, out, start, nframes);
    }
    core->stats.cycles++;
    return 0;
}

int ap_register(ap_core *core, int (*set_process_callback)(void *, int (*)(uint32_t, void *),
                                                           void *),
                void *client) {
    if (core == NULL || set_process_callback == NULL || client == NULL) return -1;
    return set_process_callback(client, ap_process, core);
}

/* ----- an importable module, so Python can find this file --------------------------------- */

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_jack_process",
    "The native JACK backend's C process callback; loaded with ctypes by "
    "bridge.jack_native_process.",
    -1, NULL, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__jack_process(void) { return PyModule_Create(&module); }
