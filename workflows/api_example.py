"""Queue one Differential Diffusion workflow over ComfyUI's HTTP API, once per change map.

Usage: python api_example.py [--server 127.0.0.1:8188] [--checkpoint v1-5-pruned-emaonly-fp16.safetensors]
                             [--image PICTURE.png] [--steps 20] [--out api_example_out]
Standard library only. Each change map (white = change, black = keep) is written as a PNG, uploaded
with POST /upload/image and loaded by a LoadImageMask node; /history says when each request is done.
"""

import argparse
import json
import math
import os
import struct
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))


def png_grey(rows):
    """An 8-bit greyscale PNG from rows of 0..255 values."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"".join(b"\0" + bytes(row) for row in rows)
    header = struct.pack(">IIBBBBB", len(rows[0]), len(rows), 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def change_maps(size=64):
    """Three maps: change the left half, the right half, or a soft disc in the middle."""
    half, r = size / 2, size / 2
    disc = [[round(255 * max(0.0, 1 - math.hypot(x + 0.5 - half, y + 0.5 - half) / r)) for x in range(size)]
            for y in range(size)]
    return {"left_half": [[255 if x < half else 0 for x in range(size)] for _ in range(size)],
            "right_half": [[255 if x >= half else 0 for x in range(size)] for _ in range(size)],
            "soft_disc": disc}


def upload(server, name, data):
    """POST /upload/image (multipart form); returns the name the server stored the file under."""
    boundary = uuid.uuid4().hex
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
            "Content-Type: image/png\r\n\r\n").encode()
    tail = f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="overwrite"\r\n\r\ntrue\r\n--{boundary}--\r\n'
    request = urllib.request.Request(f"http://{server}/upload/image", head + data + tail.encode(),
                                     {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(request) as response:
        return json.load(response)["name"]


def workflow(checkpoint, picture, change_map, steps, prefix):
    """The API-format prompt: picture + change map -> Differential KSampler -> composite -> SaveImage."""
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "2": {"class_type": "LoadImage", "inputs": {"image": picture}},
        "3": {"class_type": "LoadImageMask", "inputs": {"image": change_map, "channel": "red"}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "a field of sunflowers"}},
        "5": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "blurry, low quality"}},
        "6": {"class_type": "VAEEncode", "inputs": {"pixels": ["2", 0], "vae": ["1", 2]}},
        "7": {"class_type": "DDE_DifferentialKSampler", "inputs": {
            "model": ["1", 0], "seed": 42, "steps": steps, "cfg": 7.0, "sampler_name": "euler",
            "scheduler": "normal", "positive": ["4", 0], "negative": ["5", 0], "latent_image": ["6", 0],
            "denoise": 1.0, "change_map": ["3", 0], "mode": "step", "invert": False, "strength": 1.0,
            "softness": 0.0}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["7", 0], "vae": ["1", 2]}},
        "9": {"class_type": "DDE_CompositeByChangeMap", "inputs": {
            "original": ["2", 0], "edited": ["8", 0], "change_map": ["3", 0], "blend": "map", "feather": 0,
            "invert": False}},
        "10": {"class_type": "SaveImage", "inputs": {"images": ["9", 0], "filename_prefix": prefix}},
    }


def queue(server, prompt, client_id):
    body = json.dumps({"prompt": prompt, "client_id": client_id}).encode()
    request = urllib.request.Request(f"http://{server}/prompt", body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request) as response:
            return json.load(response)["prompt_id"]
    except urllib.error.HTTPError as error:   # 400: the server names the input it refused, e.g. the checkpoint
        raise SystemExit(f"/prompt refused the workflow: {error.read().decode()}") from None


def wait(server, prompt_id, timeout=600):
    """Poll /history until the request is done; returns its history entry."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        with urllib.request.urlopen(f"http://{server}/history/{prompt_id}") as response:
            entry = json.load(response).get(prompt_id)
        if entry and entry.get("status", {}).get("completed") is not None:
            return entry
        time.sleep(0.5)
    raise TimeoutError(f"{prompt_id} not done after {timeout}s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="127.0.0.1:8188", help="ComfyUI host:port")
    parser.add_argument("--checkpoint", default="v1-5-pruned-emaonly-fp16.safetensors", help="a checkpoint name")
    parser.add_argument("--image", default=os.path.join(HERE, "inputs", "example_scene.png"), help="picture to edit")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", default="api_example_out", help="folder for the results")
    args = parser.parse_args()

    with open(args.image, "rb") as f:
        picture = upload(args.server, os.path.basename(args.image), f.read())
    client_id = uuid.uuid4().hex
    jobs = {}
    for name, rows in change_maps().items():   # one request per change map
        change_map = upload(args.server, f"api_example_{name}.png", png_grey(rows))
        prompt = workflow(args.checkpoint, picture, change_map, args.steps, f"api_example/{name}")
        jobs[name] = queue(args.server, prompt, client_id)
        print(f"queued {name}: {jobs[name]}")

    os.makedirs(args.out, exist_ok=True)
    for name, prompt_id in jobs.items():
        entry = wait(args.server, prompt_id)
        if entry["status"].get("status_str") != "success":
            raise SystemExit(f"{name} failed: {json.dumps(entry['status'])}")
        for image in entry["outputs"]["10"]["images"]:
            query = urllib.parse.urlencode({k: image[k] for k in ("filename", "subfolder", "type")})
            path = os.path.join(args.out, image["filename"])
            with urllib.request.urlopen(f"http://{args.server}/view?{query}") as response, open(path, "wb") as f:
                f.write(response.read())
            print(f"{name}: {path}")


if __name__ == "__main__":
    main()
