package gpus

// catalog holds every NVIDIA model either provider names, with the
// provider's own spellings. Sources of the names:
//
//   - Vast: the official CLI's GPU name constants, vast-ai/vast-cli
//     vastai/data/query.py ("GPU name constants (from
//     vast/controller/gpulist.json, column [1])"); every one of its NVIDIA
//     names is a Name or a spelling here (vast's gpus_test.go checks it).
//   - Lambda: the gpu_description of GET /instance-types, as recorded in
//     alexandervaneck/lambda-ai-cloud-api-client
//     tests/data/m_instance_types_response.json ("A6000 (48 GB)", "A100 (40
//     GB SXM4)", "H100 (80 GB SXM5)", "GH200 (96 GB)", "RTX 6000 (24 GB)",
//     "Tesla V100 (16 GB)", "B200 (180 GB SXM6)", …); the provider turns a
//     description into "A6000", "A100 SXM4", "H100 SXM5" (memory removed).
//
// Nominal sizes are NVIDIA's product sizes. Families group what is one GPU
// in another form factor (PCIe, SXM, NVL, the RTX PRO 6000 editions);
// Super, Ti, D, laptop and Ada cards are models of their own, as the
// providers list them apart.
var catalog = []Model{
	// Data centre. Vast's "A10g" is AWS's A10G, a different SKU from the
	// A10 (gpuhunt maps A10 to "A10" only: dstackai/gpuhunt
	// src/gpuhunt/providers/vastai.py SAME_GPU_NAMES).
	{Name: "A10", GB: gb(24), Names: []string{"A10 PCIe"}}, // Lambda "A10 (24 GB PCIe)"
	{Name: "A10g", GB: gb(24)},
	{Name: "A16", GB: gb(16)},
	{Name: "A30", GB: gb(24)},
	{Name: "A40", GB: gb(48)},
	// Vast lists "A100 SXM" beside "A100 SXM4": the same part (the A100's
	// only SXM module is SXM4). A100X (A100 with a BlueField DPU) is its
	// own entry in Vast's list and in gpuhunt's (SAME_GPU_NAMES).
	{Name: "A100 PCIE", Family: "A100", GB: gb(40, 80)},                              // Lambda "A100 (40 GB PCIe)"
	{Name: "A100 SXM4", Family: "A100", GB: gb(40, 80), Names: []string{"A100 SXM"}}, // Lambda "A100 (40 GB SXM4)", "A100 (80 GB SXM4)"
	{Name: "A100X", GB: gb(80)},
	{Name: "A800 PCIE", Family: "A800", GB: gb(40, 80)},
	{Name: "B200", GB: gb(180, 192), Names: []string{"B200 SXM6"}},                  // Lambda "B200 (180 GB SXM6)"
	{Name: "GH200 SXM", Family: "GH200", GB: gb(96, 144), Names: []string{"GH200"}}, // Lambda "GH200 (96 GB)"
	{Name: "H100 PCIE", Family: "H100", GB: gb(80)},                                 // Lambda "H100 (80 GB PCIe)"
	// nvidia-smi names the SXM part "NVIDIA H100 80GB HBM3" (the memory
	// total 81559 MiB of providers/vast/vasttest/catalog.go is its reading).
	{Name: "H100 SXM", Family: "H100", GB: gb(80), Names: []string{"H100 SXM5", "H100 HBM3"}}, // Lambda "H100 (80 GB SXM5)"
	{Name: "H100 NVL", Family: "H100", GB: gb(94)},
	{Name: "H200", Family: "H200", GB: gb(141), Names: []string{"H200 SXM"}},
	{Name: "H200 NVL", Family: "H200", GB: gb(141)},
	{Name: "L4", GB: gb(24)},
	{Name: "L40", GB: gb(48)},
	{Name: "L40S", GB: gb(48)},
	{Name: "Tesla K20c", GB: gb(5)},
	{Name: "Tesla K80", GB: gb(12)},
	{Name: "Tesla M40", GB: gb(12, 24)},
	{Name: "Tesla P4", GB: gb(8)},
	{Name: "Tesla P6", GB: gb(16)},
	{Name: "Tesla P40", GB: gb(24)},
	{Name: "Tesla P100", GB: gb(12, 16)},
	{Name: "Tesla T4", GB: gb(16)},
	{Name: "Tesla V100", GB: gb(16, 32)}, // Lambda "Tesla V100 (16 GB)"

	// GeForce.
	{Name: "GeForce 970", GB: gb(4)},
	{Name: "GTX 750 Ti", GB: gb(2)},
	{Name: "GTX 1050", GB: gb(2, 3)},
	{Name: "GTX 1050 Ti", GB: gb(4)},
	{Name: "GTX 1060", GB: gb(3, 6)},
	{Name: "GTX 1070", GB: gb(8)},
	{Name: "GTX 1070 Ti", GB: gb(8)},
	{Name: "GTX 1080", GB: gb(8)},
	{Name: "GTX 1080 Ti", GB: gb(11)},
	{Name: "GTX 1650", GB: gb(4)},
	{Name: "GTX 1650 S", GB: gb(4)},
	{Name: "GTX 1650 Ti", GB: gb(4)},
	{Name: "GTX 1660", GB: gb(6)},
	{Name: "GTX 1660 S", GB: gb(6)},
	{Name: "GTX 1660 Ti", GB: gb(6)},
	{Name: "GTX TITAN X", GB: gb(12)},
	{Name: "RTX 2060", GB: gb(6, 12)},
	{Name: "RTX 2060S", GB: gb(8)},
	{Name: "RTX 2070", GB: gb(8)},
	{Name: "RTX 2070S", GB: gb(8)},
	{Name: "RTX 2080", GB: gb(8)},
	{Name: "RTX 2080S", GB: gb(8)},
	{Name: "RTX 2080 Ti", GB: gb(11)},
	{Name: "RTX 3050", GB: gb(8)},
	{Name: "RTX 3060", GB: gb(8, 12)},
	{Name: "RTX 3060 laptop", GB: gb(6)},
	{Name: "RTX 3060 Ti", GB: gb(8)},
	{Name: "RTX 3070", GB: gb(8)},
	{Name: "RTX 3070 laptop", GB: gb(8)},
	{Name: "RTX 3070 Ti", GB: gb(8)},
	{Name: "RTX 3080", GB: gb(10, 12)},
	{Name: "RTX 3080 Ti", GB: gb(12)},
	{Name: "RTX 3090", GB: gb(24)},
	{Name: "RTX 3090 Ti", GB: gb(24)},
	{Name: "RTX 4060", GB: gb(8)},
	{Name: "RTX 4060 laptop", GB: gb(8)},
	{Name: "RTX 4060 Ti", GB: gb(8, 16)},
	{Name: "RTX 4070", GB: gb(12)},
	{Name: "RTX 4070 laptop", GB: gb(8)},
	{Name: "RTX 4070S", GB: gb(12)},
	{Name: "RTX 4070S Ti", GB: gb(16)},
	{Name: "RTX 4070 Ti", GB: gb(12)},
	{Name: "RTX 4080", GB: gb(16)},
	{Name: "RTX 4080 laptop", GB: gb(12)},
	{Name: "RTX 4080S", GB: gb(16)},
	{Name: "RTX 4090", GB: gb(24)},
	{Name: "RTX 4090D", GB: gb(24)},
	{Name: "RTX 4090 Ti", GB: gb(24)},
	{Name: "RTX 5060", GB: gb(8)},
	{Name: "RTX 5060 Ti", GB: gb(8, 16)},
	{Name: "RTX 5070", GB: gb(12)},
	{Name: "RTX 5070 Ti", GB: gb(16)},
	{Name: "RTX 5080", GB: gb(16)},
	{Name: "RTX 5090", GB: gb(32)},
	{Name: "RTX 5090 Ti", GB: gb(32)},
	{Name: "Titan RTX", GB: gb(24)},
	{Name: "Titan V", GB: gb(12)},
	{Name: "TITAN V CEO", GB: gb(32)},
	{Name: "Titan X", GB: gb(12)},
	{Name: "Titan Xp", GB: gb(12)},

	// Workstation. Lambda's "RTX 6000 (24 GB)" (gpu_1x_rtx6000) is the
	// Turing Quadro RTX 6000, Vast's "Q RTX 6000": 24 GB says so. The Ada
	// and Blackwell 6000s are other cards, named with Ada or PRO.
	{Name: "Quadro K620", GB: gb(2)},
	{Name: "Quadro K2200", GB: gb(4)},
	{Name: "Quadro P2000", GB: gb(5)},
	{Name: "Quadro P4000", GB: gb(8)},
	{Name: "Quadro P5000", GB: gb(16)},
	{Name: "Quadro P6000", GB: gb(24)},
	{Name: "Quadro GP100", GB: gb(16), Names: []string{"GP100"}},
	{Name: "Quadro GV100", GB: gb(32)},
	{Name: "Q RTX 4000", GB: gb(8), Names: []string{"Quadro RTX 4000"}},
	{Name: "Q RTX 5000", GB: gb(16), Names: []string{"Quadro RTX 5000"}},
	{Name: "Q RTX 6000", GB: gb(24), Names: []string{"Quadro RTX 6000", "RTX 6000"}},
	{Name: "Q RTX 8000", GB: gb(48), Names: []string{"Quadro RTX 8000"}},
	{Name: "RTX A2000", GB: gb(6, 12), Names: []string{"A2000"}},
	{Name: "RTX A4000", GB: gb(16), Names: []string{"A4000"}},
	{Name: "RTX A4500", GB: gb(20), Names: []string{"A4500"}},
	{Name: "RTX A5000", GB: gb(24), Names: []string{"A5000"}},
	{Name: "RTX A6000", GB: gb(48), Names: []string{"A6000"}}, // Lambda "A6000 (48 GB)"
	{Name: "RTX 2000Ada", GB: gb(16)},
	{Name: "RTX 4000Ada", GB: gb(20)},
	{Name: "RTX 4500Ada", GB: gb(24)},
	{Name: "RTX 5000Ada", GB: gb(32)},
	{Name: "RTX 5880Ada", GB: gb(48)},
	{Name: "RTX 6000Ada", GB: gb(48)},
	{Name: "RTX PRO 4000", GB: gb(24)},
	{Name: "RTX PRO 4000 Mobile", GB: gb(16)},
	{Name: "RTX PRO 4500", GB: gb(32)},
	{Name: "RTX PRO 5000", GB: gb(48, 72)},
	{Name: "RTX PRO 6000", Family: "RTX PRO 6000", GB: gb(96)},
	{Name: "RTX PRO 6000 S", Family: "RTX PRO 6000", GB: gb(96)},
	{Name: "RTX PRO 6000 WS", Family: "RTX PRO 6000", GB: gb(96)},
	{Name: "RTX PRO 6000 Max-Q", Family: "RTX PRO 6000", GB: gb(96)},

	// Mining cards.
	{Name: "CMP 50HX", GB: gb(10)},
	{Name: "CMP 170HX", GB: gb(8)},
	{Name: "P104-100", GB: gb(8)},
	{Name: "P106-100", GB: gb(6)},
}

func gb(sizes ...float64) []float64 { return sizes }
