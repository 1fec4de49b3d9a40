"""Write the bundled example: a 2-minute synthetic track of sections A B C A B D A B.

Usage: python examples/make_example.py OUT.wav
"""

import sys

import soundfile as sf

from msaf_learned_ssm.examples import synthesize_sections

if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "example.wav"
    y, boundaries = synthesize_sections("ABCABDAB", 15.0)
    sf.write(out, y, 22050)
    print(f"wrote {out}: {len(y) / 22050:.1f} s, planted boundaries "
          + " ".join(f"{b:.1f}" for b in boundaries))
