JB.matrixView = function (ctx, figure, layers) { return JB.graphView(ctx, figure); };
