#!/usr/bin/env python3
"""Reads the pickles of a MuseTalk / LiveTalking avatar folder, without torch.

read_musetalk_avatar.py SRC_DIR OUT_DIR
  SRC_DIR: full_imgs/, mask/, coords.pkl, mask_coords.pkl, latents.pt (MuseTalk realtime
           inference and LiveTalking write these)
  writes OUT_DIR/coords.json (face boxes), OUT_DIR/mask_coords.json (crop boxes) and
         OUT_DIR/latents.npy ([N, 8, 32, 32] float32) when latents.pt exists.

latents.pt is torch's zip format: data.pkl references storages in data/<key>; the tensors
are rebuilt here with numpy (a list of [1, 8, 32, 32] tensors, or one [N, 8, 32, 32]).
"""
import json
import os
import pickle
import sys
import zipfile

import numpy as np

DTYPES = {
    "FloatStorage": np.float32, "HalfStorage": np.float16, "DoubleStorage": np.float64,
    "BFloat16Storage": None, "LongStorage": np.int64, "IntStorage": np.int32,
}


class _Storage:
    def __init__(self, name):
        self.name = name


def _rebuild_tensor(storage, offset, size, stride, *_):
    data, dtype = storage
    arr = np.frombuffer(data, dtype=dtype)
    if not size:
        return arr[offset:offset + 1].reshape(())
    itemsize = arr.itemsize
    return np.lib.stride_tricks.as_strided(
        arr[offset:], shape=tuple(size), strides=tuple(s * itemsize for s in stride)).copy()


def load_torch(path):
    with zipfile.ZipFile(path) as z:
        pkl = next(n for n in z.namelist() if n.endswith("data.pkl"))
        root = pkl[: -len("data.pkl")]

        class Unpickler(pickle.Unpickler):
            def find_class(self, module, name):
                if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
                    return _rebuild_tensor
                if module == "torch" and name.endswith("Storage"):
                    return _Storage(name)
                if module == "collections" and name == "OrderedDict":
                    import collections
                    return collections.OrderedDict
                if module == "torch" and name == "device":
                    return lambda *a: a
                return super().find_class(module, name)

            def persistent_load(self, pid):
                kind, storage_type, key, _location, _numel = pid[:5]
                assert kind == "storage", pid
                name = storage_type.name if isinstance(storage_type, _Storage) else str(storage_type)
                dtype = DTYPES.get(name)
                if dtype is None:
                    raise ValueError(f"latents.pt: unsupported storage {name}")
                return (z.read(f"{root}data/{key}"), dtype)

        with z.open(pkl) as f:
            return Unpickler(f).load()


def boxes(path):
    with open(path, "rb") as f:
        data = pickle.load(f)
    return [[int(v) for v in b] for b in data]


def main():
    src, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    for name in ("coords", "mask_coords"):
        p = os.path.join(src, f"{name}.pkl")
        if not os.path.exists(p):
            sys.exit(f"{p}: missing")
        with open(os.path.join(out, f"{name}.json"), "w") as f:
            json.dump(boxes(p), f)
    lp = os.path.join(src, "latents.pt")
    if os.path.exists(lp):
        lat = load_torch(lp)
        if isinstance(lat, (list, tuple)):
            lat = np.concatenate([np.asarray(t).reshape(-1, 8, 32, 32) for t in lat])
        lat = np.asarray(lat, dtype=np.float32).reshape(-1, 8, 32, 32)
        np.save(os.path.join(out, "latents.npy"), lat)


if __name__ == "__main__":
    main()
