"""What the data/*/prepare.py scripts share: GPT-2's BPE, and writing a dataset so that it is whole or absent."""
import os

OUTPUTS = ('train.bin', 'val.bin')  # the files every dataset folder holds; a character set adds meta.pkl


def gpt2_encoding():
    """tiktoken's 'gpt2': its two files are downloaded once into a cache, or read from TIKTOKEN_CACHE_DIR."""
    import tiktoken
    try:
        return tiktoken.get_encoding('gpt2')
    except OSError as e:  # offline, and no cached copy
        raise FileNotFoundError(f"could not fetch GPT-2's BPE files for tiktoken ({type(e).__name__}). Offline, set "
                                "TIKTOKEN_CACHE_DIR to a folder that holds them (a tiktoken cache from a machine "
                                "online)") from None


def temporary(out_dir, name):
    """Where a prepare script writes `name` before publish() moves it into place: a name of this process's own, so
    that two runs preparing the same dataset at once (a sweep's first two) each publish a whole file."""
    os.makedirs(out_dir, exist_ok=True)
    return os.path.join(out_dir, f'{name}.{os.getpid()}.tmp')


def publish(out_dir, names):
    """Rename every finished file into place at the end, so an interrupted preparation leaves none of them
    half-written under its real name (train.py checks that all are there and re-prepares otherwise)."""
    for name in names:
        os.replace(temporary(out_dir, name), os.path.join(out_dir, name))
