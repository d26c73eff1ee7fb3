"""GPT-2's BPE through tiktoken, for the prepare.py of every BPE dataset."""
import tiktoken


def gpt2_encoding():
    """tiktoken's 'gpt2': its two files are downloaded once into a cache, or read from TIKTOKEN_CACHE_DIR."""
    try:
        return tiktoken.get_encoding('gpt2')
    except OSError as e:  # offline, and no cached copy
        raise FileNotFoundError(f"could not fetch GPT-2's BPE files for tiktoken ({type(e).__name__}). Offline, set "
                                "TIKTOKEN_CACHE_DIR to a folder that holds them (a tiktoken cache from a machine "
                                "online)") from None
