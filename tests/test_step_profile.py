"""The train step's profile: HLO instructions found by name, each executed operation put in
the right kind and pass, and a real traced step of the small model broken down."""
import collections
import json

import pytest

from experiments.benchmarks import step_profile

HLO = """\
ENTRY %main {
  %ynn_fusion.3 = f32[8,260,1536]{2,1,0} fusion(%a, %b), kind=kCustom, calls=%c, metadata={op_name="jit(step)/jvp(GroupViT.encode_image)/image_tower/stage_0/block_3/mlp/fc1/dot_general" stack_frame_id=1}
  %select_select_fusion.15 = f32[8,260,1536]{2,1,0} fusion(%x), kind=kLoop, calls=%d, metadata={op_name="jit(step)/jvp(GroupViT.encode_image)/image_tower/stage_0/block_3/mlp/erf" stack_frame_id=2}
  %dot.449 = f32[8,6,260,64]{3,2,1,0} dot(%p, %q), lhs_batch_dims={0,1}, metadata={op_name="jit(step)/transpose(jvp(GroupViT.encode_image))/image_tower/stage_0/block_5/attn/bthd,bshd->bhts/dot_general"}
  %copy_bitcast_fusion.161 = f32[1536,2080]{1,0} fusion(%m), kind=kLoop, metadata={op_name="jit(step)/transpose(jvp(GroupViT.encode_image))/image_tower/stage_0/block_1/mlp/add_any"}
  %multiply_add_fusion.5 = f32[49408,256]{1,0} fusion(%e, %f), kind=kLoop, calls=%g, metadata={op_name="jit(step)/add" stack_frame_id=865}
  %wrapped_broadcast.8 = f32[49408,256]{1,0} fusion(%k), kind=kLoop, metadata={op_name="jit(step)/transpose(jvp(GroupViT.encode_captions_prompts))/text_tower/token_embed/jit(_take)/broadcast_in_dim"}
  %exponential_fusion.2 = f32[8,6,260,260]{3,2,1,0} fusion(%l), kind=kLoop, metadata={op_name="jit(step)/jvp(GroupViT.encode_image)/image_tower/stage_0/block_5/attn/exp"}
  %add_fusion.9 = f32[8,260,384]{2,1,0} fusion(%r), kind=kLoop, metadata={op_name="jit(step)/jvp(GroupViT.encode_image)/image_tower/stage_0/block_5/norm1/add"}
  %multiply_add_fusion.1250 = f32[8,260,1536]{2,1,0} fusion(%s, %t), kind=kLoop, metadata={op_name="jit(step)/transpose(jvp(GroupViT.encode_image))/image_tower/stage_0/block_1/mlp/add_any"}
  %transpose_copy_fusion.63 = f32[3,224,224,8]{3,2,1,0} fusion(%images), kind=kLoop, calls=%h
  %ynn_fusion.1082 = f32[8,6,260,260]{3,2,1,0} fusion(%u, %w), kind=kCustom, metadata={op_name="jit(step)/jvp(GroupViT.encode_image)/image_tower/stage_0/block_2/attn/reduce_max"}
  %ynn_fusion.1083 = f32[2080,1152]{1,0} fusion(%y, %z), kind=kCustom, metadata={op_name="jit(step)/jvp(GroupViT.encode_image)/image_tower/stage_0/block_2/attn/qkv/dot_general"}
  %ynn_fusion.1024 = f32[512,384]{1,0} fusion(%y, %z), kind=kCustom, metadata={op_name="jit(step)/jvp(GroupViT.encode_image)/image_tower/stage_0/grouping/cross_attn/attn/k/dot_general"}
  %broadcast_divide_fusion.3 = f32[8,64,196]{2,1,0} fusion(%o), kind=kLoop, metadata={op_name="jit(step)/jvp(GroupViT.encode_image)/image_tower/stage_0/grouping/assign/div"}
}
"""

EXPECTED = {  # name -> (kind, pass)
    "ynn_fusion.3": ("matmul", "forward"),
    "select_select_fusion.15": ("gelu", "forward"),
    "dot.449": ("attention", "backward"),
    "copy_bitcast_fusion.161": ("layout", "backward"),
    "multiply_add_fusion.5": ("optimizer", "update"),
    "wrapped_broadcast.8": ("embedding", "backward"),
    "exponential_fusion.2": ("attention", "forward"),
    "ynn_fusion.1082": ("attention", "forward"),  # q.k product fused with the softmax's max
    "ynn_fusion.1083": ("matmul", "forward"),     # the attention's qkv projection
    "ynn_fusion.1024": ("matmul", "forward"),     # the grouping's cross-attention key proj.
    "broadcast_divide_fusion.3": ("softmax", "forward"),
    "multiply_add_fusion.1250": ("gelu", "backward"),
    "add_fusion.9": ("norm", "forward"),
    "transpose_copy_fusion.63": ("layout", "unknown"),
}


def test_instructions_are_found_with_their_opcode_and_source():
    found = step_profile.instructions(HLO)
    assert set(found) == set(EXPECTED) - {"transpose_copy_fusion.63"}  # no metadata
    assert found["dot.449"][0] == "dot"
    assert found["multiply_add_fusion.5"] == ("fusion", "jit(step)/add")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_operation_gets_its_kind_and_pass(name):
    opcode, op_name = step_profile.instructions(HLO).get(name, ("", ""))
    assert (step_profile.kind_of(name, opcode, op_name),
            step_profile.pass_of(op_name)) == EXPECTED[name]


def test_profile_sums_per_step_and_lists_the_costliest_non_matmul_operations():
    seconds = collections.Counter({"ynn_fusion.3": 6.0, "select_select_fusion.15": 1.5,
                                   "multiply_add_fusion.5": 2.5})
    result = step_profile.profile(seconds, step_profile.instructions(HLO), steps=2)
    assert result["op_s_per_step"] == 5.0
    assert result["kinds"]["matmul"] == {"op_s": 3.0, "share": 0.6, "forward": 3.0,
                                         "backward": 0.0, "update": 0.0, "unknown": 0.0}
    assert result["kinds"]["optimizer"]["update"] == 1.25
    assert [row["op"] for row in result["top_non_matmul"]] == ["multiply_add_fusion.5",
                                                              "select_select_fusion.15"]


def test_a_traced_step_of_the_small_model_is_broken_down(tmp_path):
    out = tmp_path / "profile.json"
    code = step_profile.main(["step_profile", "--variant=runlocal", "--steps=1",
                              f"--out={out}", "--allow_contended"])
    assert code == 0
    result = json.loads(out.read_text())
    kinds = result["kinds"]
    assert set(kinds) == set(step_profile.KINDS)
    assert sum(k["share"] for k in kinds.values()) == pytest.approx(1.0)
    # Every executed operation was found in the compiled module: the runtime's names and
    # the HLO's agree, so nothing lands in "unknown" but instructions without a source.
    assert kinds["matmul"]["forward"] > 0 and kinds["matmul"]["backward"] > 0
    assert kinds["optimizer"]["update"] > 0 and kinds["gelu"]["forward"] > 0
    assert kinds["attention"]["forward"] > 0 and kinds["attention"]["backward"] > 0
    unknown = sum(k["unknown"] for k in kinds.values())
    assert unknown < 0.1 * result["op_s_per_step"]
